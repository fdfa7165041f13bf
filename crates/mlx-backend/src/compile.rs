//! `mx::compile` of a function whose body is Rust: the shim traces it through a C callback
//! on the first call per input shapes and replays MLX's compiled graph after that (elementwise
//! chains fused into one kernel, no per-op graph building on the host).

use crate::array::{check, make, Array};
use crate::error::{MlxError, Result};
use crate::ffi::{self, RawArray, RawCompiled, RawVec};
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};

/// The body of a compiled function: the inputs (tracers while tracing) to the outputs.
pub(crate) type Body<'f> = dyn FnMut(Vec<Array>) -> Result<Vec<Array>> + 'f;

/// What the trampoline gets: the body and the error it returned, if any.
struct Ctx<'a, 'f> {
    body: &'a mut Body<'f>,
    error: Option<MlxError>,
}

/// The C callback: runs the body on the shim's input handles, pushes its results.
unsafe extern "C" fn trampoline(
    ctx: *mut c_void,
    inputs: *const *mut RawArray,
    n: usize,
    out: *mut RawVec,
) -> c_int {
    // SAFETY: `ctx` is the `Ctx` that `CompiledFn::call` passed for this call, alive for it.
    let ctx = unsafe { &mut *(ctx as *mut Ctx<'_, '_>) };
    let run = || -> Result<()> {
        let mut args = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: the shim passes `n` valid handles, borrowed for this call; cloning makes
            // handles of our own.
            let p = unsafe { *inputs.add(i) };
            args.push(make(|o| unsafe { ffi::bfm_clone(p, o) })?);
        }
        for a in (ctx.body)(args)? {
            // SAFETY: valid list and handle; the shim copies the handle.
            check(unsafe { ffi::bfm_vec_push(out, a.ptr()) })?;
        }
        Ok(())
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            ctx.error = Some(e);
            1
        }
        Err(_) => {
            ctx.error = Some(MlxError::Graph("the lowering panicked while tracing".into()));
            1
        }
    }
}

/// A list of arrays owned by the shim.
struct ArrayList(NonNull<RawVec>);

impl ArrayList {
    fn new() -> Result<Self> {
        let mut p = ptr::null_mut();
        // SAFETY: out-param.
        check(unsafe { ffi::bfm_vec_new(&mut p) })?;
        NonNull::new(p)
            .map(ArrayList)
            .ok_or_else(|| MlxError::Binding("the shim returned a null list".into()))
    }

    fn take(&self) -> Result<Vec<Array>> {
        // SAFETY: valid list.
        let n = unsafe { ffi::bfm_vec_len(self.0.as_ptr()) };
        (0..n).map(|i| make(|o| unsafe { ffi::bfm_vec_get(self.0.as_ptr(), i, o) })).collect()
    }
}

impl Drop for ArrayList {
    fn drop(&mut self) {
        // SAFETY: freed once.
        unsafe { ffi::bfm_vec_free(self.0.as_ptr()) }
    }
}

/// An `mx::compile`d function with a Rust body. Not `Send` (it traces MLX arrays of the
/// calling thread's stream).
pub(crate) struct CompiledFn {
    raw: NonNull<RawCompiled>,
    /// How many calls traced the body (MLX traces once per input shapes and dtypes).
    pub(crate) traces: usize,
}

impl std::fmt::Debug for CompiledFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledFn").field("traces", &self.traces).finish_non_exhaustive()
    }
}

impl CompiledFn {
    /// A new compiled function (nothing is traced until the first call). `shapeless`: one
    /// trace for all input shapes (only for bodies whose graph does not depend on them).
    pub(crate) fn new(shapeless: bool) -> Result<Self> {
        let mut p = ptr::null_mut();
        // SAFETY: `trampoline` has the callback's signature; out-param.
        check(unsafe { ffi::bfm_compile(trampoline, shapeless as c_int, &mut p) })?;
        let raw =
            NonNull::new(p).ok_or_else(|| MlxError::Binding("the shim returned a null function".into()))?;
        Ok(CompiledFn { raw, traces: 0 })
    }

    /// Calls the function: `body` runs (on tracer arrays) only when MLX traces, i.e. on the
    /// first call for these input shapes and dtypes; the results are lazy arrays.
    pub(crate) fn call(&mut self, inputs: &[Array], body: &mut Body<'_>) -> Result<Vec<Array>> {
        let mut traced = false;
        let mut counting = |args: Vec<Array>| {
            traced = true;
            body(args)
        };
        let mut ctx = Ctx { body: &mut counting, error: None };
        let out = ArrayList::new()?;
        let ptrs: Vec<*const RawArray> = inputs.iter().map(Array::ptr).collect();
        // SAFETY: valid function, inputs and list; `ctx` outlives the call.
        let rc = unsafe {
            ffi::bfm_compiled_call(
                self.raw.as_ptr(),
                &mut ctx as *mut Ctx<'_, '_> as *mut c_void,
                ptrs.as_ptr(),
                ptrs.len(),
                out.0.as_ptr(),
            )
        };
        let error = ctx.error.take();
        drop(ctx);
        if traced {
            self.traces += 1;
        }
        if let Some(e) = error {
            return Err(e);
        }
        check(rc)?;
        out.take()
    }
}

impl Drop for CompiledFn {
    fn drop(&mut self) {
        // SAFETY: freed once; the shim drops MLX's cache entry with it.
        unsafe { ffi::bfm_compiled_free(self.raw.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::{with_device, BinaryOp, Device};
    use blockfuse_ir::HostTensor;

    #[test]
    fn the_body_is_traced_once_per_shape_and_its_errors_come_back() {
        with_device(Device::Cpu, || {
            let two = Array::from_host(&HostTensor::from_f32(vec![], &[2.0])).unwrap();
            two.binary(BinaryOp::Add, &two).unwrap().eval().unwrap();
            let mut f = CompiledFn::new(false).unwrap();
            let mut body =
                |x: Vec<Array>| -> Result<Vec<Array>> { Ok(vec![x[0].binary(BinaryOp::Mul, &two)?]) };
            for n in [3usize, 3, 3, 5, 5] {
                let x = Array::from_host(&HostTensor::from_f32(vec![n], &vec![1.5; n])).unwrap();
                let y = f.call(&[x], &mut body).unwrap();
                assert_eq!(y[0].to_host().unwrap().to_f64_vec(), vec![3.0; n]);
            }
            assert_eq!(f.traces, 2);
            let mut failing = |_: Vec<Array>| -> Result<Vec<Array>> { Err(MlxError::Check("no".into())) };
            let mut g = CompiledFn::new(false).unwrap();
            let x = Array::from_host(&HostTensor::from_f32(vec![1], &[1.0])).unwrap();
            let e = g.call(&[x], &mut failing).unwrap_err();
            assert!(matches!(e, MlxError::Check(ref m) if m == "no"), "{e}");
        })
        .unwrap();
    }
}
