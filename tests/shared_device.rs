//! Building on a `wgpu::Device` and `Queue` the application already has
//! (`WgpuContext::from_device`, `Device::Context`): retrievals run on that device and equal
//! the CPU reference.

mod common;

use std::sync::Arc;

use dam::wgpu_backend::wgpu;
use dam::{Device, Patterns, Retriever, Separation, WgpuContext, WgpuOptions};

#[test]
fn a_context_on_the_applications_own_device_serves_retrievals() {
    common::gpu();
    let options = WgpuOptions::default();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = options.backends;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("an adapter (the GPU tests need one)");
    // The application's device: default limits, no optional features.
    let (device, queue) =
        pollster::block_on(adapter.request_device(&Default::default())).expect("device");
    let ctx = Arc::new(WgpuContext::from_device(
        &adapter,
        device.clone(),
        queue,
        &options,
    ));
    assert_eq!(
        ctx.features(),
        wgpu::Features::empty(),
        "only what the device has"
    );
    assert_eq!(
        ctx.max_binding_bytes(),
        device
            .limits()
            .max_storage_buffer_binding_size
            .min(device.limits().max_buffer_size)
    );
    let shared = Device::Context(ctx.clone());
    assert_eq!(
        shared,
        Device::Context(ctx.clone()),
        "a context equals itself"
    );
    assert_ne!(shared, Device::wgpu());

    let raw = common::unit_patterns(3_000, 33, 5);
    let queries = common::noisy_queries(&raw, 7, 0.3, 6);
    let patterns = Patterns::new(raw).unwrap();
    let build = |device: Device| {
        Retriever::builder(patterns.clone())
            .separation(Separation::Softmax { beta: 6.0 })
            .device(device)
            .build()
            .unwrap()
    };
    let on_shared = build(shared.clone());
    assert!(on_shared.device_name().starts_with("wgpu: "));
    let got = on_shared.retrieve(queries.view()).unwrap();
    let want = build(Device::Cpu).retrieve(queries.view()).unwrap();
    common::assert_matches("shared device", &got, &want);
    assert_eq!(shared.describe().unwrap().0, "wgpu");
}
