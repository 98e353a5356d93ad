"""The pipeline scheduler (tppp_scheduler_t) for Python: stage functions or layers."""
import ctypes as C
import os

import numpy as np

from . import (_Owned, DTYPES, POLICIES, STAGE_FN, SchedulerParams, SchedulerStats, TpppError, _check, _enum, _tensor, _view,
               library)

class Scheduler(_Owned):
    """The micro-batch pipeline scheduler over the group's PP scope (tppp_scheduler_t).

    policy "fill_drain" (one step) or "decode_ring" (`steps` steps, the last stage's output handed
    back to stage 0). A stage is either layers (add_layer) or a Python function
    fn(microbatch, step, x, y) filling y from x (numpy views of host memory, DeviceTensor for device
    memory); an exception in fn fails the run on every stage and is re-raised by run()."""

    _destroy = staticmethod(lambda h: library.tppp_scheduler_destroy(h))

    def __init__(self, group, hidden, num_microbatches=1, policy="fill_drain", steps=1, dtype=np.float32,
                 stream=None):
        """stream: CUDA groups, the cudaStream_t (an int) stage functions queue their work on."""
        p = SchedulerParams()
        _check(library.tppp_scheduler_params_init(C.byref(p), C.sizeof(p)))
        p.policy, p.num_microbatches, p.steps = _enum(POLICIES, policy, "policy"), num_microbatches, steps
        p.dtype, p.hidden = _enum(DTYPES, np.dtype(dtype), "dtype"), hidden
        p.stream = stream
        self._group, self._p, self.dtype = group, p, np.dtype(dtype)
        self._layers, self._fn, self._err = [], None, None
        h = C.c_void_p()
        _check(library.tppp_scheduler_create(group._h, C.byref(p), C.byref(h)))
        self._h = h

    def set_stage_fn(self, fn):
        """fn(microbatch, step, x, y) -> None; raise to fail the run."""
        def tramp(user, mb, step, xin, yout):
            try:
                fn(mb, step, _view(xin.contents), _view(yout.contents))
                return 0
            except BaseException as e:  # noqa: B036 - nothing may unwind into C
                self._err = e
                return 1
        cb = STAGE_FN(tramp)
        _check(library.tppp_scheduler_set_stage_fn(self._h, cb, None))
        self._fn = cb

    def add_layer(self, layer):
        """Appends a layer to this stage's built-in stage (kept alive by the scheduler)."""
        _check(library.tppp_scheduler_add_layer(self._h, layer._h))
        self._layers.append(layer)

    def run(self, x=None, rows=None):
        """Runs one batch: stage 0 passes x [rows, hidden]; the last stage gets the output array
        (pass rows= there when it is not stage 0); other stages pass nothing and get None."""
        info = self._group.info()
        first, last = info["pp_rank"] == 0, info["pp_rank"] == info["pp_size"] - 1
        keep = np.ascontiguousarray(x, self.dtype) if first and x is not None else None  # alive through the run
        xt = _tensor(keep) if keep is not None else None
        y = None
        if last:
            n = rows if rows is not None else (keep.shape[0] if keep is not None else None)
            if n is None:
                raise TpppError(1, "Scheduler.run on the last stage: pass rows= (the batch's row count)")
            y = np.empty((n, self._p.hidden), self.dtype)
        yt = _tensor(y) if y is not None else None
        self._err = None
        st = library.tppp_scheduler_run(self._h, C.byref(xt) if xt is not None else None,
                                        C.byref(yt) if yt is not None else None)
        if self._err is not None:
            err, self._err = self._err, None
            raise err
        _check(st)
        return y

    def stats(self):
        """This stage's last run: stage, num_microbatches, steps, wall/busy/idle ms, bubble, theory_bubble."""
        s = SchedulerStats()
        s.struct_size = C.sizeof(s)
        _check(library.tppp_scheduler_get_stats(self._h, C.byref(s)))
        return {name: getattr(s, name) for name, _ in SchedulerStats._fields_[1:]}

    def write_trace(self, path):
        """Collective over the world: rank 0 writes a Chrome trace of the last run."""
        _check(library.tppp_scheduler_write_trace(self._h, os.fsencode(path)))
