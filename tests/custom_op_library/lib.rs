//! A custom operator library for ONNX Runtime, as Triton's
//! `model_operations { op_library_filename: [...] }` loads them: it exports
//! `RegisterCustomOps`, which adds the domain `tritonrs.test` with one
//! operator, `Double` (FP32 in, the same shape out, each element times 2).
//! The Python tests build a model that needs it and serve it with the
//! library named in its configuration; without the library ONNX Runtime
//! cannot load the model. Built with `cargo build --example
//! custom_op_library`.

use std::ffi::{c_char, c_void};
use std::ptr;

use ort_sys::{
    ONNXTensorElementDataType, OrtApi, OrtApiBase, OrtCustomOp, OrtCustomOpInputOutputCharacteristic, OrtKernelContext,
    OrtKernelInfo, OrtMemType, OrtSessionOptions, OrtStatusPtr, OrtTensorTypeAndShapeInfo, OrtValue,
};

/// The API version this library asks ONNX Runtime for; any library of
/// version 1.17 or later provides it.
const API_VERSION: u32 = 17;

/// The operator, as ONNX Runtime reads it: a table of callbacks.
struct Operator(OrtCustomOp);

// SAFETY: the table holds only function pointers and a version number,
// which ONNX Runtime reads from any thread.
unsafe impl Sync for Operator {}

static DOUBLE: Operator = Operator(OrtCustomOp {
    version: API_VERSION,
    CreateKernel: Some(create_kernel),
    GetName: Some(name),
    GetExecutionProviderType: Some(execution_provider),
    GetInputType: Some(element_type),
    GetInputTypeCount: Some(one),
    GetOutputType: Some(element_type),
    GetOutputTypeCount: Some(one),
    KernelCompute: Some(compute),
    KernelDestroy: Some(destroy),
    GetInputCharacteristic: Some(required),
    GetOutputCharacteristic: Some(required),
    GetInputMemoryType: Some(memory_type),
    GetVariadicInputMinArity: Some(one_arity),
    GetVariadicInputHomogeneity: Some(homogeneous),
    GetVariadicOutputMinArity: Some(one_arity),
    GetVariadicOutputHomogeneity: Some(homogeneous),
    CreateKernelV2: None,
    KernelComputeV2: None,
    InferOutputShapeFn: None,
    GetStartVersion: None,
    GetEndVersion: None,
    GetMayInplace: None,
    ReleaseMayInplace: None,
    GetAliasMap: None,
    ReleaseAliasMap: None,
});

/// Adds the `tritonrs.test` domain to the session options ONNX Runtime
/// loads this library for.
///
/// # Safety
/// ONNX Runtime calls it with valid options and its API base.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn RegisterCustomOps(
    options: *mut OrtSessionOptions,
    api_base: *const OrtApiBase,
) -> OrtStatusPtr {
    unsafe {
        let api = ((*api_base).GetApi)(API_VERSION);
        if api.is_null() {
            return OrtStatusPtr(ptr::null_mut());
        }
        let api = &*api;
        let mut domain = ptr::null_mut();
        let status = (api.CreateCustomOpDomain)(c"tritonrs.test".as_ptr(), &mut domain);
        if !status.0.is_null() {
            return status;
        }
        let status = (api.CustomOpDomain_Add)(domain, &DOUBLE.0);
        if !status.0.is_null() {
            return status;
        }
        (api.AddCustomOpDomain)(options, domain)
    }
}

unsafe extern "system" fn create_kernel(
    _: *const OrtCustomOp,
    api: *const OrtApi,
    _: *const OrtKernelInfo,
) -> *mut c_void {
    // The kernel needs nothing but the API to run.
    api.cast_mut().cast()
}

unsafe extern "system" fn name(_: *const OrtCustomOp) -> *const c_char {
    c"Double".as_ptr()
}

unsafe extern "system" fn execution_provider(_: *const OrtCustomOp) -> *const c_char {
    // Null: the CPU.
    ptr::null()
}

unsafe extern "system" fn element_type(_: *const OrtCustomOp, _: usize) -> ONNXTensorElementDataType {
    ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT
}

unsafe extern "system" fn one(_: *const OrtCustomOp) -> usize {
    1
}

unsafe extern "system" fn required(_: *const OrtCustomOp, _: usize) -> OrtCustomOpInputOutputCharacteristic {
    OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED
}

unsafe extern "system" fn memory_type(_: *const OrtCustomOp, _: usize) -> OrtMemType {
    OrtMemType::OrtMemTypeDefault
}

unsafe extern "system" fn one_arity(_: *const OrtCustomOp) -> i32 {
    1
}

unsafe extern "system" fn homogeneous(_: *const OrtCustomOp) -> i32 {
    1
}

unsafe extern "system" fn destroy(_: *mut c_void) {}

/// Y = 2 * X. A failed API call leaves the output unwritten; the tests
/// would see it.
unsafe extern "system" fn compute(kernel: *mut c_void, context: *mut OrtKernelContext) {
    unsafe {
        let api = &*kernel.cast::<OrtApi>().cast_const();
        let ok = |status: OrtStatusPtr| status.0.is_null();
        let mut input: *const OrtValue = ptr::null();
        if !ok((api.KernelContext_GetInput)(context, 0, &mut input)) {
            return;
        }
        let mut info: *mut OrtTensorTypeAndShapeInfo = ptr::null_mut();
        if !ok((api.GetTensorTypeAndShape)(input, &mut info)) {
            return;
        }
        let (mut rank, mut count) = (0usize, 0usize);
        let mut dims = Vec::new();
        let described = ok((api.GetDimensionsCount)(info, &mut rank))
            && {
                dims.resize(rank, 0i64);
                ok((api.GetDimensions)(info, dims.as_mut_ptr(), rank))
            }
            && ok((api.GetTensorShapeElementCount)(info, &mut count));
        (api.ReleaseTensorTypeAndShapeInfo)(info);
        if !described {
            return;
        }
        let mut output: *mut OrtValue = ptr::null_mut();
        if !ok((api.KernelContext_GetOutput)(context, 0, dims.as_ptr(), rank, &mut output)) {
            return;
        }
        let (mut from, mut to): (*mut c_void, *mut c_void) = (ptr::null_mut(), ptr::null_mut());
        if !ok((api.GetTensorMutableData)(input.cast_mut(), &mut from))
            || !ok((api.GetTensorMutableData)(output, &mut to))
        {
            return;
        }
        let (from, to) = (from.cast::<f32>(), to.cast::<f32>());
        for index in 0..count {
            *to.add(index) = 2.0 * *from.add(index);
        }
    }
}
