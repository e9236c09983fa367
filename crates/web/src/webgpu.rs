//! The WebGPU device (the `webgpu` build only): created once per page or worker, asynchronously
//! (a blocking init cannot wait in a browser), and shared by every model loaded after.

use std::cell::RefCell;

use burn::prelude::Device;
use wasm_bindgen::JsError;

thread_local! {
    static DEVICE: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// The WebGPU device, or an error saying why there is none.
pub async fn device() -> Result<Device, JsError> {
    if let Some(device) = DEVICE.with(|d| d.borrow().clone()) {
        return Ok(device);
    }
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .map_err(|_| JsError::new("this browser has no navigator"))?;
    if !js_sys::Reflect::has(&navigator, &"gpu".into()).unwrap_or(false) {
        return Err(JsError::new("this browser has no WebGPU adapter"));
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| JsError::new(&format!("this browser has no WebGPU adapter ({e})")))?;
    DEVICE.with(|d| *d.borrow_mut() = Some(device.clone()));
    Ok(device)
}
