//! `Device::auto()` and the `DAM_DEVICE` override (one test: the environment is global).

mod common;

use dam::{Device, Error};

#[test]
fn dam_device_overrides_auto_selection() {
    // SAFETY of set_var: this test binary has a single test, so no other thread reads
    // the environment concurrently.
    std::env::remove_var("DAM_DEVICE");
    assert_eq!(
        Device::auto().unwrap(),
        common::gpu(),
        "with an adapter present, auto() picks wgpu"
    );
    std::env::set_var("DAM_DEVICE", "cpu");
    assert_eq!(Device::auto().unwrap(), Device::Cpu);
    std::env::set_var("DAM_DEVICE", "wgpu");
    assert_eq!(Device::auto().unwrap(), Device::wgpu());
    std::env::set_var("DAM_DEVICE", "tpu");
    assert!(matches!(Device::auto(), Err(Error::UnknownDevice { value }) if value == "tpu"));
    std::env::remove_var("DAM_DEVICE");
}
