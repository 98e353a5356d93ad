package tppp

import (
	"bufio"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// The test binary re-runs itself as each rank under tppp-run.
func TestMain(m *testing.M) {
	switch os.Getenv("TPPP_GO_RANK") {
	case "1":
		os.Exit(rankMain())
	case "model":
		os.Exit(modelRankMain())
	}
	os.Exit(m.Run())
}

func value(seed, i int) float32 {
	z := uint64(seed)*0x9e3779b97f4a7c15 + uint64(i)*0xbf58476d1ce4e5b9
	z ^= z >> 31
	return float32(z%2000)/1000 - 1 + 0.0005
}

// One rank: COLUMN (gathered) and ROW layers on this rank's shard vs float64.
func rankMain() int {
	const m, k, n = 5, 16, 12
	x, w, b := make([]float32, m*k), make([]float32, n*k), make([]float32, n)
	for i := range x {
		x[i] = value(1, i)
	}
	for i := range w {
		w[i] = value(2, i)
	}
	for i := range b {
		b[i] = value(3, i)
	}
	ref := make([]float64, m*n)
	for r := 0; r < m; r++ {
		for c := 0; c < n; c++ {
			s := float64(b[c])
			for j := 0; j < k; j++ {
				s += float64(x[r*k+j]) * float64(w[c*k+j])
			}
			ref[r*n+c] = s
		}
	}
	rel := func(y []float32) float64 {
		e, mag := 0.0, 1e-30
		for i := range y {
			e = math.Max(e, math.Abs(float64(y[i])-ref[i]))
			mag = math.Max(mag, math.Abs(ref[i]))
		}
		return e / mag
	}
	g, err := GroupFromEnv(2, 1, 60000)
	if err != nil {
		println(err.Error())
		return 1
	}
	defer g.Close()
	info, _ := g.Info()
	r, tp := info.TPRank, info.TPSize
	rows := n / tp
	col, err := NewLinear(g, Column, k, n, true, true)
	if err == nil {
		err = col.Bind(w[r*rows*k:(r+1)*rows*k], rows, k, b[r*rows:(r+1)*rows])
	}
	if err != nil {
		println(err.Error())
		return 1
	}
	defer col.Close()
	y, err := col.Forward(x, m)
	if err != nil {
		println(err.Error())
		return 1
	}
	kk := k / tp
	wc, xc := make([]float32, 0, n*kk), make([]float32, 0, m*kk)
	for c := 0; c < n; c++ {
		wc = append(wc, w[c*k+r*kk:c*k+(r+1)*kk]...)
	}
	for i := 0; i < m; i++ {
		xc = append(xc, x[i*k+r*kk:i*k+(r+1)*kk]...)
	}
	row, err := NewLinear(g, Row, k, n, true, false)
	if err == nil {
		err = row.Bind(wc, n, kk, b)
	}
	if err != nil {
		println(err.Error())
		return 1
	}
	defer row.Close()
	y2, err := row.Forward(xc, m)
	if err != nil {
		println(err.Error())
		return 1
	}
	bad := col.Bind(w, n, k, b) // the whole matrix is not this rank's shard
	te, ok := bad.(*Error)
	e1, e2 := rel(y), rel(y2)
	if e1 < 1e-5 && e2 < 1e-5 && ok && te.Status == 1 {
		println("rank", info.Rank, "OK")
		return 0
	}
	println("rank", info.Rank, "FAIL", e1, e2)
	return 1
}

func TestTwoRankTPLinearOverUCX(t *testing.T) {
	run := os.Getenv("TPPP_RUN")
	if run == "" {
		t.Fatal("TPPP_RUN is not set")
	}
	cmd := exec.Command(run, "-n", "2", "--timeout", "120", "--", os.Args[0])
	cmd.Env = append(os.Environ(), "TPPP_GO_RANK=1")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "OK") != 2 {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestStructSizesMatchTheHeader(t *testing.T) {
	out, err := exec.Command(os.Getenv("TPPP_STRUCT_LAYOUT"), "--flat").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uintptr{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[1] == "size" {
			v, _ := strconv.Atoi(f[2])
			want[f[0]] = uintptr(v)
		}
	}
	for name, got := range structSizes() {
		if want[name] != got {
			t.Errorf("%s: header says %d, cgo sees %d", name, want[name], got)
		}
	}
}

func TestErrors(t *testing.T) {
	if major, _, _ := Version(); major != 0 {
		t.Fatalf("major %d", major)
	}
	for _, k := range []string{"RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
		"SLURM_PROCID", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "TPPP_RUN_ID"} {
		os.Unsetenv(k)
	}
	// Half a launcher's pair is a mistake the library names.
	os.Setenv("RANK", "0")
	_, err := GroupFromEnv(1, 1, 1000)
	e, ok := err.(*Error)
	if !ok || e.Status != 2 || !strings.Contains(e.Message, "launcher") || !strings.Contains(e.Message, "RANK") {
		t.Fatalf("want INVALID_USAGE naming the launcher and RANK, got %v", err)
	}
	os.Unsetenv("RANK")
	// No launcher at all is a singleton: world 1, rank 0.
	g, err := GroupFromEnv(1, 1, 1000)
	if err != nil {
		t.Fatalf("singleton: %v", err)
	}
	defer g.Close()
	if info, err := g.Info(); err != nil || info.World != 1 || info.Rank != 0 {
		t.Fatalf("singleton info %+v, %v", info, err)
	}
	// A singleton cannot hold a tp=2 grid.
	if _, err := GroupFromEnv(2, 1, 1000); err == nil {
		t.Fatal("tp=2 in a singleton: want an error")
	}
}
