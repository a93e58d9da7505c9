//! `Device::auto()` and the `DAM_DEVICE` override (one test: the environment is global).

mod common;

use dam::{AdapterChoice, Device, Error, WgpuContext, WgpuOptions};

#[test]
fn dam_device_overrides_auto_selection() {
    // SAFETY of set_var: this test binary has a single test, so no other thread reads
    // the environment concurrently.
    std::env::remove_var("DAM_DEVICE");
    common::gpu();
    let ctx = WgpuContext::shared(&WgpuOptions::default()).unwrap();
    let (device, reason) = Device::choose().unwrap();
    eprintln!("auto: {reason}");
    // A software rasterizer is never the automatic choice; a hardware adapter is.
    let expected = if ctx.is_software() {
        Device::Cpu
    } else {
        Device::wgpu()
    };
    assert_eq!(device, expected, "{reason}");
    assert_eq!(
        reason.contains("software rasterizer"),
        ctx.is_software(),
        "{reason}"
    );
    assert_eq!(Device::auto().unwrap(), expected);

    std::env::set_var("DAM_DEVICE", "cpu");
    assert_eq!(Device::auto().unwrap(), Device::Cpu);
    std::env::set_var("DAM_DEVICE", " Reference ");
    assert_eq!(Device::auto().unwrap(), Device::Reference);
    assert_eq!(
        Device::Reference.describe().unwrap(),
        ("reference".to_string(), "cpu reference (f64)".to_string())
    );
    let (kind, name) = Device::Cpu.describe().unwrap();
    assert_eq!(kind, "cpu");
    assert!(
        name.starts_with("cpu (") && name.contains("threads"),
        "{name}"
    );
    for (name, want) in [("cpu", Device::Cpu), ("REFERENCE", Device::Reference)] {
        assert_eq!(Device::parse(name).unwrap().0, want, "{name}");
    }
    std::env::set_var("DAM_DEVICE", "wgpu");
    assert_eq!(Device::auto().unwrap(), Device::wgpu());

    // By index and by name, as `dam devices` lists them.
    let adapters = WgpuContext::adapters(WgpuOptions::default().backends);
    assert!(!adapters.is_empty(), "the adapter found above is listed");
    assert_eq!(adapters[0].index, 0);
    std::env::set_var("DAM_DEVICE", "wgpu:0");
    let by_index = Device::auto().unwrap();
    let Device::Wgpu(options) = &by_index else {
        panic!("wgpu:0 is a wgpu device, got {by_index:?}");
    };
    assert_eq!(options.adapter, AdapterChoice::Index(0));
    let ctx0 = WgpuContext::shared(options).unwrap();
    assert_eq!(ctx0.adapter_info().name, adapters[0].name);
    let name = adapters[0].name.to_uppercase();
    std::env::set_var("DAM_DEVICE", format!("wgpu:{name}"));
    let (by_name, reason) = Device::choose().unwrap();
    assert_eq!(
        by_name,
        Device::Wgpu(WgpuOptions {
            adapter: AdapterChoice::Name(name.clone()),
            ..WgpuOptions::default()
        })
    );
    assert!(reason.contains(&adapters[0].name), "{reason}");

    // No such adapter: an error naming the choice, never a silent fallback.
    std::env::set_var("DAM_DEVICE", format!("wgpu:{}", adapters.len()));
    let err = Device::auto().unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(
        err.to_string().contains("no adapter matches Index"),
        "{err}"
    );
    for bad in ["tpu", "wgpu:", "gpu:1"] {
        std::env::set_var("DAM_DEVICE", bad);
        assert!(
            matches!(Device::auto(), Err(Error::UnknownDevice { ref value }) if value == bad),
            "{bad}"
        );
    }
    std::env::remove_var("DAM_DEVICE");
}
