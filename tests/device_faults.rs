//! Device faults that can be provoked here: no adapter at all. The check runs in a child
//! process whose Vulkan loader is pointed at no driver (`VK_ICD_FILENAMES`) and whose wgpu
//! is limited to Vulkan (`WGPU_BACKEND`), so that no adapter exists in it.

use dam::{Device, WgpuContext, WgpuOptions};

const CHILD: &str = "no_adapter_child";

#[test]
fn without_an_adapter_wgpu_errors_and_auto_falls_back_to_cpu() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", CHILD, "--ignored", "--nocapture"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("WGPU_BACKEND", "vulkan")
        .env_remove("DAM_DEVICE")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "child did not run:\n{text}");
    assert!(
        text.contains("cpu: no wgpu adapter"),
        "no fallback reason:\n{text}"
    );
}

#[test]
#[ignore = "run in a child process by without_an_adapter_wgpu_errors_and_auto_falls_back_to_cpu"]
fn no_adapter_child() {
    assert_eq!(
        std::env::var("VK_ICD_FILENAMES").as_deref(),
        Ok("/nonexistent/icd.json")
    );
    let err = WgpuContext::new(&WgpuOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no wgpu adapter"), "{err}");
    let (device, reason) = Device::choose().unwrap();
    assert_eq!(device, Device::Cpu);
    eprintln!("{reason}");
    assert_eq!(Device::auto().unwrap(), Device::Cpu);
    assert!(WgpuContext::adapters(WgpuOptions::default().backends).is_empty());
    std::env::set_var("DAM_DEVICE", "wgpu");
    let err = Device::auto().unwrap_err();
    assert!(err.to_string().contains("no wgpu adapter"), "{err}");
    let patterns = dam::Patterns::new(ndarray::array![[1.0f32, 0.0]]).unwrap();
    let built = dam::Retriever::builder(patterns)
        .device(Device::wgpu())
        .build();
    assert!(
        matches!(
            built,
            Err(dam::Error::Backend {
                backend: "wgpu",
                ..
            })
        ),
        "{built:?}"
    );
}
