//! `rlipv2._rlipv2`, the extension module under the Python package `rlipv2` (python/rlipv2):
//! the MSDA op and its backward on contiguous host arrays, and the detector.
//!
//! The Python layer owns the arrays (numpy or torch CPU tensors, made contiguous, dtype checked)
//! and passes their data addresses with their shapes; everything here validates the shapes with
//! the CLI's checks (`rlipv2::io::official_problem`) before reading an address,
//! and only reads or writes the element counts those validated shapes give. Errors become
//! Python exceptions with the CLI's messages: `ValueError` for bad input, `OSError` for files,
//! `RuntimeError` for a backend or device that cannot run it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

mod detector;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rlipv2::backend::{Backend, Ops};
use rlipv2::io::{official_problem, OfficialShapes};
use rlipv2::problem::{DType, MsDeformAttnInput, MsDeformAttnProblem};
use rlipv2::Error;

/// `e` as the Python exception a caller can act on, with the CLI's message.
pub(crate) fn py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Device { .. } | Error::Unsupported { .. } | Error::BackendUnavailable { .. } => {
            PyRuntimeError::new_err(msg)
        }
        _ => PyValueError::new_err(msg),
    }
}

thread_local! {
    /// Backends opened so far on this thread, by the name asked for (opening a GPU backend
    /// compiles its shaders: once per process and name, not per call).
    static BACKENDS: RefCell<HashMap<String, Rc<dyn Backend>>> = RefCell::new(HashMap::new());
}

/// Runs `f` on the backend named `name` (`auto`, `cpu`, `reference`, `wgpu`, `cubecl-wgpu`,
/// `cubecl-cuda`), opened on first use.
fn with_backend<T>(name: &str, f: impl FnOnce(&dyn Backend) -> rlipv2::Result<T>) -> rlipv2::Result<T> {
    let be = BACKENDS.with(|cache| -> rlipv2::Result<Rc<dyn Backend>> {
        if let Some(be) = cache.borrow().get(name) {
            return Ok(be.clone());
        }
        let (be, _) = rlipv2::backend::select(name)?;
        let be: Rc<dyn Backend> = Rc::from(be);
        cache.borrow_mut().insert(name.to_string(), be.clone());
        Ok(be)
    })?;
    f(be.as_ref())
}

/// The shapes of one call as the Python layer passes them: `value`, `spatial_shapes` (shape,
/// values), `level_start_index` (shape, values), `sampling_locations`, `attention_weights`.
type ShapeArgs = (Vec<usize>, (Vec<usize>, Vec<i64>), (Vec<usize>, Vec<i64>), Vec<usize>, Vec<usize>);

fn problem(op: &'static str, s: &ShapeArgs) -> rlipv2::Result<MsDeformAttnProblem> {
    official_problem(
        op,
        OfficialShapes {
            value: &s.0,
            spatial_shapes: (&s.1 .0, &s.1 .1),
            level_start_index: (&s.2 .0, &s.2 .1),
            sampling_locations: &s.3,
            attention_weights: &s.4,
        },
    )
}

/// `len` elements of type `T` at the address `addr` of an array the Python layer holds.
///
/// # Safety
/// `addr` is the data of a live, contiguous array of at least `len` elements of `T`.
unsafe fn view<'a, T>(addr: usize, len: usize) -> &'a [T] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the caller's
    unsafe { std::slice::from_raw_parts(addr as *const T, len) }
}

/// Writes `data` to the array at `addr`.
///
/// # Safety
/// `addr` is the data of a live, contiguous, writable array of at least `data.len()` elements.
unsafe fn write<T: Copy>(addr: usize, data: &[T]) {
    if !data.is_empty() {
        // SAFETY: the caller's
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut T, data.len()) }
    }
}

fn parse_dtype(dtype: &str) -> PyResult<DType> {
    dtype.parse().map_err(PyValueError::new_err)
}

/// The shapes' problem, for the Python layer to size its outputs and to fail early:
/// `(B, Q, M·D)` of the output.
#[pyfunction]
fn check(shapes: ShapeArgs) -> PyResult<(usize, usize, usize)> {
    let pr = problem(rlipv2::problem::ms_deform_attn::OP, &shapes).map_err(py_err)?;
    Ok((pr.batch, pr.queries, pr.heads * pr.channels))
}

/// Forward: `addrs = [value, sampling_locations, attention_weights, output]`, f32 (`f64`:
/// float64 arrays through the f64 oracle, `backend` must be `reference`).
#[pyfunction]
#[pyo3(signature = (shapes, addrs, backend, dtype, f64))]
fn ms_deform_attn(
    py: Python<'_>,
    shapes: ShapeArgs,
    addrs: [usize; 4],
    backend: String,
    dtype: &str,
    f64: bool,
) -> PyResult<()> {
    let pr = problem(rlipv2::problem::ms_deform_attn::OP, &shapes).map_err(py_err)?;
    let dtype = parse_dtype(dtype)?;
    let (nv, nl, nw) = (pr.value_shape().iter().product::<usize>(), pr.samples() * 2, pr.samples());
    if f64 {
        reference_only(&backend)?;
        // SAFETY: the Python layer passes contiguous float64 arrays whose shapes are `shapes`
        // (validated above); the output holds B·Q·M·D elements.
        let (v, l, w) = unsafe { (view::<f64>(addrs[0], nv), view::<f64>(addrs[1], nl), view::<f64>(addrs[2], nw)) };
        let out = rlipv2::reference::ms_deform_attn::core::<f64>(&pr, v, l, w);
        unsafe { write(addrs[3], &out) };
        return Ok(());
    }
    py.detach(|| {
        // SAFETY: as above, float32 arrays
        let (v, l, w) = unsafe { (view::<f32>(addrs[0], nv), view::<f32>(addrs[1], nl), view::<f32>(addrs[2], nw)) };
        let input = MsDeformAttnInput::Official { value: v, sampling_locations: l, attention_weights: w };
        let out = with_backend(&backend, |be| be.ms_deform_attn(&pr, &input, dtype))?;
        unsafe { write(addrs[3], &out) };
        Ok(())
    })
    .map_err(py_err)
}

/// Backward: `addrs = [value, sampling_locations, attention_weights, grad_output, grad_value,
/// grad_sampling_locations, grad_attention_weights]`, f32 (or f64 as the forward).
#[pyfunction]
#[pyo3(signature = (shapes, addrs, backend, dtype, f64))]
fn ms_deform_attn_backward(
    py: Python<'_>,
    shapes: ShapeArgs,
    addrs: [usize; 7],
    backend: String,
    dtype: &str,
    f64: bool,
) -> PyResult<()> {
    let pr = problem(rlipv2::problem::ms_deform_attn_backward::OP, &shapes).map_err(py_err)?;
    let dtype = parse_dtype(dtype)?;
    let (nv, nl, nw, ng) =
        (pr.value_shape().iter().product::<usize>(), pr.samples() * 2, pr.samples(), pr.output_len());
    if f64 {
        reference_only(&backend)?;
        // SAFETY: contiguous float64 arrays of the validated shapes (grad_output [B,Q,M·D]; the
        // three gradients shaped as their inputs)
        let (v, l, w, g) = unsafe {
            (view::<f64>(addrs[0], nv), view::<f64>(addrs[1], nl), view::<f64>(addrs[2], nw), view::<f64>(addrs[3], ng))
        };
        let (gv, gl, gw) = rlipv2::reference::ms_deform_attn_backward::core::<f64>(&pr, v, l, w, g);
        unsafe {
            write(addrs[4], &gv);
            write(addrs[5], &gl);
            write(addrs[6], &gw);
        }
        return Ok(());
    }
    py.detach(|| {
        // SAFETY: as above, float32 arrays
        let (v, l, w, g) = unsafe {
            (view::<f32>(addrs[0], nv), view::<f32>(addrs[1], nl), view::<f32>(addrs[2], nw), view::<f32>(addrs[3], ng))
        };
        let input = MsDeformAttnInput::Official { value: v, sampling_locations: l, attention_weights: w };
        let grads = with_backend(&backend, |be| be.ms_deform_attn_backward(&pr, &input, g, dtype))?;
        unsafe {
            write(addrs[4], &grads.value);
            write(addrs[5], &grads.sampling);
            write(addrs[6], &grads.attention);
        }
        Ok(())
    })
    .map_err(py_err)
}

fn reference_only(backend: &str) -> PyResult<()> {
    if backend != "reference" {
        return Err(PyValueError::new_err(format!(
            "float64 arrays run on the f64 reference only (backend=\"reference\"); backend `{backend}` takes float32"
        )));
    }
    Ok(())
}

/// Every backend with whether it opens here (and why not), as `rlipv2 info` lists them.
#[pyfunction]
fn backends() -> Vec<(String, bool, String)> {
    rlipv2::backend::BackendKind::ALL
        .iter()
        .map(|&k| match rlipv2::backend::open(k) {
            Ok(b) => (k.name().to_string(), true, b.device()),
            Err(e) => (k.name().to_string(), false, e.to_string()),
        })
        .collect()
}

#[pymodule]
fn _rlipv2(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(ms_deform_attn, m)?)?;
    m.add_function(wrap_pyfunction!(ms_deform_attn_backward, m)?)?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add_class::<detector::Detector>()?;
    Ok(())
}
