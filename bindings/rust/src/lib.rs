//! Safe Rust over libtppp's C API: RAII handles (`Drop` frees them),
//! `Result<_, Error>` carrying the status and `tppp_last_error()`, and slices
//! in and out, so user code needs no `unsafe`.
//!
//! ```no_run
//! let g = tppp::Group::from_env(2, 1, 60_000)?;        // under tppp-run -n 2
//! let sum = g.all_reduce_f32(&[1.0, 2.0], tppp::Scope::World)?;
//! # Ok::<(), tppp::Error>(())
//! ```
pub mod model;
pub mod sys;

pub use model::{Checkpoint, GenerateOptions, Generated, Model, ModelInfo, ModelOptions, Sampling, StepResult};

use std::ffi::CStr;
use std::fmt;
use std::ptr;

/// A failed call: the status code (stable, see c_api.h) and the library's message.
#[derive(Debug, Clone)]
pub struct Error {
    pub status: i32,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: tppp_status_string returns static text for any value.
        let name = unsafe { CStr::from_ptr(sys::tppp_status_string(self.status)) };
        write!(f, "{}: {}", name.to_string_lossy(), self.message)
    }
}

impl std::error::Error for Error {}

fn check(s: i32) -> Result<(), Error> {
    if s == 0 {
        return Ok(());
    }
    // SAFETY: tppp_last_error returns a valid thread-local C string.
    let msg = unsafe { CStr::from_ptr(sys::tppp_last_error()) }.to_string_lossy().into_owned();
    Err(Error { status: s, message: msg })
}

/// (major, minor, patch) of the loaded library.
pub fn version() -> (u32, u32, u32) {
    // SAFETY: no arguments, no state.
    let v = unsafe { sys::tppp_version() };
    (v / 10000, v / 100 % 100, v % 100)
}

#[derive(Clone, Copy, Debug)]
pub enum Scope {
    World = 0,
    Tp = 1,
    Pp = 2,
}

#[derive(Clone, Copy, Debug)]
pub enum LayerKind {
    Column = 0,
    Row = 1,
    Replicated = 2,
    GateUp = 3,
    Qkv = 4,
    Embedding = 5,
    LmHead = 6,
    Mlp = 7,
}

/// A TP x PP process group.
pub struct Group {
    h: sys::tppp_group_t,
}

impl Group {
    /// Joins the group described by the launcher's environment (tppp-run, torchrun, mpirun, srun).
    pub fn from_env(tp_size: i32, pp_size: i32, timeout_ms: i32) -> Result<Group, Error> {
        // SAFETY: the API is called with correctly sized, initialised structs.
        unsafe {
            check(sys::tppp_abi_check(sys::TPPP_VERSION_MAJOR, sys::TPPP_VERSION_MINOR))?;
            let mut p = sys::tppp_group_params::default();
            check(sys::tppp_group_params_init(&mut p, std::mem::size_of::<sys::tppp_group_params>()))?;
            p.tp_size = tp_size;
            p.pp_size = pp_size;
            p.timeout_ms = timeout_ms;
            let mut h = ptr::null_mut();
            check(sys::tppp_group_create_from_env(&p, &mut h))?;
            Ok(Group { h })
        }
    }

    pub fn info(&self) -> Result<sys::tppp_group_info, Error> {
        let mut i = sys::tppp_group_info { struct_size: std::mem::size_of::<sys::tppp_group_info>() as u32, ..Default::default() };
        // SAFETY: self.h is a live group; i is sized.
        check(unsafe { sys::tppp_group_get_info(self.h, &mut i) })?;
        Ok(i)
    }

    pub fn all_reduce_f32(&self, x: &[f32], scope: Scope) -> Result<Vec<f32>, Error> {
        let mut out = vec![0.0f32; x.len()];
        // SAFETY: both buffers hold x.len() f32; the call completes before returning (CPU group).
        check(unsafe {
            sys::tppp_all_reduce(self.h, scope as i32, x.as_ptr().cast(), out.as_mut_ptr().cast(), x.len(), 0, 0,
                                 ptr::null_mut())
        })?;
        Ok(out)
    }

    pub fn barrier(&self, scope: Scope) -> Result<(), Error> {
        // SAFETY: live group.
        check(unsafe { sys::tppp_barrier(self.h, scope as i32) })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: h came from tppp_group_create_from_env and is freed once.
        unsafe { sys::tppp_group_destroy(self.h) }
    }
}

fn host_f32(data: *const f32, rows: i64, cols: i64) -> sys::tppp_tensor {
    let mut shape = [0i64; sys::TPPP_MAX_DIMS];
    shape[0] = rows;
    shape[1] = cols;
    sys::tppp_tensor { data: data as *mut _, mem_kind: 0, device: -1, dtype: 0, ndim: 2, shape, strides: ptr::null() }
}

/// An f32 TP layer on a group; borrows the group so it cannot outlive it.
pub struct Layer<'g> {
    h: sys::tppp_layer_t,
    out_cols: i64,
    in_cols: i64,
    _group: &'g Group,
}

impl<'g> Layer<'g> {
    /// COLUMN, ROW or REPLICATED linear layer of in_features -> out_features.
    pub fn linear(g: &'g Group, kind: LayerKind, in_features: i64, out_features: i64, bias: bool,
                  gather_output: bool) -> Result<Layer<'g>, Error> {
        let tp = g.info()?.tp_size as i64;
        let (in_cols, out_cols) = match kind {
            LayerKind::Column => (in_features, if gather_output { out_features } else { out_features / tp }),
            LayerKind::Row => (in_features / tp, out_features),
            _ => (in_features, out_features),
        };
        // SAFETY: sized params; live group.
        unsafe {
            let mut p = sys::tppp_layer_params::default();
            check(sys::tppp_layer_params_init(&mut p, std::mem::size_of::<sys::tppp_layer_params>()))?;
            p.kind = kind as i32;
            p.in_features = in_features;
            p.out_features = out_features;
            p.bias = bias as i32;
            p.gather_output = gather_output as i32;
            p.input_is_parallel = 1;
            let mut h = ptr::null_mut();
            check(sys::tppp_layer_create(g.h, &p, &mut h))?;
            Ok(Layer { h, out_cols, in_cols, _group: g })
        }
    }

    /// This rank's shard: weight [rows, cols] row-major, optional bias.
    pub fn bind(&self, weight: &[f32], rows: i64, cols: i64, bias: Option<&[f32]>) -> Result<(), Error> {
        if weight.len() as i64 != rows * cols {
            return Err(Error { status: 1, message: format!("weight has {} values, not {rows} x {cols}", weight.len()) });
        }
        let w = host_f32(weight.as_ptr(), rows, cols);
        let b = bias.map(|b| {
            let mut t = host_f32(b.as_ptr(), b.len() as i64, 0);
            t.ndim = 1;
            t.shape[1] = 0;
            t
        });
        let bp = b.as_ref().map_or(ptr::null(), |t| t as *const _);
        // SAFETY: the tensors point at live slices for the duration of the call.
        check(unsafe { sys::tppp_layer_bind(self.h, 0, &w, bp) })
    }

    /// y = layer(x) for x [rows, in_cols]; collective over the TP group.
    pub fn forward(&self, x: &[f32], rows: i64) -> Result<Vec<f32>, Error> {
        if x.len() as i64 != rows * self.in_cols {
            return Err(Error { status: 1, message: format!("x has {} values, not {rows} x {}", x.len(), self.in_cols) });
        }
        let mut y = vec![0.0f32; (rows * self.out_cols) as usize];
        let xt = host_f32(x.as_ptr(), rows, self.in_cols);
        let yt = host_f32(y.as_mut_ptr(), rows, self.out_cols);
        // SAFETY: x and y outlive the synchronous CPU call.
        check(unsafe { sys::tppp_layer_forward(self.h, &xt, &yt, ptr::null_mut()) })?;
        Ok(y)
    }
}

impl Drop for Layer<'_> {
    fn drop(&mut self) {
        // SAFETY: h came from tppp_layer_create and is freed once.
        unsafe { sys::tppp_layer_destroy(self.h) }
    }
}
