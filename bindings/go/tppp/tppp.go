// Package tppp is the Go binding to libtppp's C API (include/c_api.h), over
// cgo: groups and TP layers with Close methods and errors that carry the
// status and tppp_last_error(). Build with CGO_LDFLAGS="-L<libdir>" when
// libtppp.so is not on the system path.
package tppp

// #cgo CFLAGS: -I${SRCDIR}/../../../include
// #cgo LDFLAGS: -ltppp
// #include <stdlib.h>
// #include "c_api.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// Error is a failed call: the stable status code and the library's message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", C.GoString(C.tppp_status_string(C.int32_t(e.Status))), e.Message)
}

func check(s C.int32_t) error {
	if s == 0 {
		return nil
	}
	return &Error{Status: int(s), Message: C.GoString(C.tppp_last_error())}
}

// Version returns the loaded library's (major, minor, patch).
func Version() (int, int, int) {
	v := int(C.tppp_version())
	return v / 10000, v / 100 % 100, v % 100
}

// Scopes of a collective.
const (
	World = 0
	TP    = 1
	PP    = 2
)

// Layer kinds.
const (
	Column     = C.TPPP_LAYER_COLUMN
	Row        = C.TPPP_LAYER_ROW
	Replicated = C.TPPP_LAYER_REPLICATED
)

// Group is a TP x PP process group; Close frees it.
type Group struct{ h C.tppp_group_t }

// Info is this rank's place in the grid.
type Info struct{ World, Rank, TPSize, TPRank, PPSize, PPRank int }

// GroupFromEnv joins the group described by the launcher's environment.
func GroupFromEnv(tpSize, ppSize, timeoutMs int) (*Group, error) {
	if err := check(C.tppp_abi_check(C.TPPP_VERSION_MAJOR, C.TPPP_VERSION_MINOR)); err != nil {
		return nil, err
	}
	var p C.tppp_group_params
	if err := check(C.tppp_group_params_init(&p, C.size_t(unsafe.Sizeof(p)))); err != nil {
		return nil, err
	}
	p.tp_size, p.pp_size, p.timeout_ms = C.int32_t(tpSize), C.int32_t(ppSize), C.int32_t(timeoutMs)
	var h C.tppp_group_t
	if err := check(C.tppp_group_create_from_env(&p, &h)); err != nil {
		return nil, err
	}
	return &Group{h}, nil
}

// Info returns the grid position.
func (g *Group) Info() (Info, error) {
	var i C.tppp_group_info
	i.struct_size = C.uint32_t(unsafe.Sizeof(i))
	if err := check(C.tppp_group_get_info(g.h, &i)); err != nil {
		return Info{}, err
	}
	return Info{int(i.world_size), int(i.rank), int(i.tp_size), int(i.tp_rank), int(i.pp_size), int(i.pp_rank)}, nil
}

// AllReduceF32 sums x over the scope.
func (g *Group) AllReduceF32(x []float32, scope int) ([]float32, error) {
	out := make([]float32, len(x))
	if len(x) == 0 {
		return out, nil
	}
	err := check(C.tppp_all_reduce(g.h, C.int32_t(scope), unsafe.Pointer(&x[0]), unsafe.Pointer(&out[0]),
		C.size_t(len(x)), C.TPPP_DTYPE_F32, C.TPPP_OP_SUM, nil))
	return out, err
}

// Close frees the group.
func (g *Group) Close() {
	if g.h != nil {
		C.tppp_group_destroy(g.h)
		g.h = nil
	}
}

// Layer is an f32 linear TP layer (Column, Row or Replicated); Close frees it.
type Layer struct {
	h               C.tppp_layer_t
	inCols, outCols int
}

// NewLinear makes a COLUMN/ROW/REPLICATED layer of in -> out features.
func NewLinear(g *Group, kind, in, out int, bias, gatherOutput bool) (*Layer, error) {
	info, err := g.Info()
	if err != nil {
		return nil, err
	}
	l := &Layer{inCols: in, outCols: out}
	switch kind {
	case Column:
		if !gatherOutput {
			l.outCols = out / info.TPSize
		}
	case Row:
		l.inCols = in / info.TPSize
	}
	var p C.tppp_layer_params
	if err := check(C.tppp_layer_params_init(&p, C.size_t(unsafe.Sizeof(p)))); err != nil {
		return nil, err
	}
	p.kind, p.in_features, p.out_features = C.int32_t(kind), C.int64_t(in), C.int64_t(out)
	p.bias, p.gather_output, p.input_is_parallel = b2i(bias), b2i(gatherOutput), 1
	if err := check(C.tppp_layer_create(g.h, &p, &l.h)); err != nil {
		return nil, err
	}
	return l, nil
}

func b2i(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}

// tensors are built in C memory so no Go pointer is stored inside a C struct.
func hostF32(data []float32, rows, cols int, ndim int) *C.tppp_tensor {
	t := (*C.tppp_tensor)(C.calloc(1, C.size_t(unsafe.Sizeof(C.tppp_tensor{}))))
	if len(data) > 0 {
		t.data = unsafe.Pointer(&data[0])
	}
	t.mem_kind, t.device, t.dtype, t.ndim = C.TPPP_MEM_HOST, -1, C.TPPP_DTYPE_F32, C.int32_t(ndim)
	t.shape[0], t.shape[1] = C.int64_t(rows), C.int64_t(cols)
	return t
}

// Bind copies this rank's shard (weight [rows, cols], optional bias).
func (l *Layer) Bind(weight []float32, rows, cols int, bias []float32) error {
	if len(weight) != rows*cols {
		return &Error{Status: 1, Message: fmt.Sprintf("weight has %d values, not %d x %d", len(weight), rows, cols)}
	}
	w := hostF32(weight, rows, cols, 2)
	defer C.free(unsafe.Pointer(w))
	var b *C.tppp_tensor
	if bias != nil {
		b = hostF32(bias, len(bias), 0, 1)
		defer C.free(unsafe.Pointer(b))
	}
	return check(C.tppp_layer_bind(l.h, 0, w, b))
}

// Forward returns layer(x) for x [rows, in]; collective over the TP group.
func (l *Layer) Forward(x []float32, rows int) ([]float32, error) {
	if len(x) != rows*l.inCols {
		return nil, &Error{Status: 1, Message: fmt.Sprintf("x has %d values, not %d x %d", len(x), rows, l.inCols)}
	}
	y := make([]float32, rows*l.outCols)
	xt, yt := hostF32(x, rows, l.inCols, 2), hostF32(y, rows, l.outCols, 2)
	defer C.free(unsafe.Pointer(xt))
	defer C.free(unsafe.Pointer(yt))
	return y, check(C.tppp_layer_forward(l.h, xt, yt, nil))
}

// Close frees the layer.
func (l *Layer) Close() {
	if l.h != nil {
		C.tppp_layer_destroy(l.h)
		l.h = nil
	}
}

// sizes of the public structs as cgo sees them (for the layout test).
func structSizes() map[string]uintptr {
	return map[string]uintptr{
		"tppp_group_params":    unsafe.Sizeof(C.tppp_group_params{}),
		"tppp_group_info":      unsafe.Sizeof(C.tppp_group_info{}),
		"tppp_tensor":          unsafe.Sizeof(C.tppp_tensor{}),
		"tppp_layer_params":    unsafe.Sizeof(C.tppp_layer_params{}),
		"tppp_model_params":    unsafe.Sizeof(C.tppp_model_params{}),
		"tppp_model_info":      unsafe.Sizeof(C.tppp_model_info{}),
		"tppp_batch":           unsafe.Sizeof(C.tppp_batch{}),
		"tppp_generate_params": unsafe.Sizeof(C.tppp_generate_params{}),
	}
}
