package tppp

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type reference struct {
	Prompts [][]int32 `json:"prompts"`
	Tokens  [][]int32 `json:"tokens"`
	Offsets []int     `json:"logits_offsets"`
	Vocab   int       `json:"vocab"`
}

// One rank of the TP=2 x PP=2 model check on transformers' qwen3 fixture:
// greedy tokens, a prompt's logits to 1e-4, removal, then follow mode.
func modelRankMain() int {
	fail := func(f string, a ...interface{}) int { fmt.Printf("FAIL "+f+"\n", a...); return 1 }
	dir := filepath.Join(os.Getenv("TPPP_FIXTURES"), "models", "qwen3")
	var ref reference
	text, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err == nil {
		err = json.Unmarshal(text, &ref)
	}
	raw, err2 := os.ReadFile(filepath.Join(dir, "logits.bin"))
	if err != nil || err2 != nil {
		return fail("reading the fixture: %v %v", err, err2)
	}
	g, err := GroupFromEnv(2, 2, 60000)
	if err != nil {
		return fail("%v", err)
	}
	defer g.Close()
	info, _ := g.Info()
	c, err := OpenCheckpoint(dir)
	if err != nil {
		return fail("%v", err)
	}
	defer c.Close()
	m, err := NewModel(g, c, ModelOptions{})
	if err != nil {
		return fail("%v", err)
	}
	defer m.Close()
	seen := 0
	toks, first, err := m.Generate(ref.Prompts, GenerateOptions{MaxNew: len(ref.Tokens[0]),
		OnToken: func(p, t int) { seen++ }})
	if err != nil {
		return fail("generate: %v", err)
	}
	p := ref.Prompts[1]
	pos, seq, want := make([]int32, len(p)), make([]int32, len(p)), make([]bool, len(p))
	for i := range p {
		pos[i], seq[i], want[i] = int32(i), 5, true
	}
	logits, ids, err := m.Forward(p, pos, seq, want)
	if err != nil {
		return fail("forward: %v", err)
	}
	mi, _ := m.Info()
	if err := m.Remove(5); err != nil {
		return fail("remove: %v", err)
	}
	if mi2, _ := m.Info(); mi2.FreePages != mi.FreePages+1 {
		return fail("free pages %d after removal, %d before", mi2.FreePages, mi.FreePages)
	}
	if info.Rank == 0 {
		if !reflect.DeepEqual(toks, ref.Tokens) {
			return fail("tokens %v, transformers' %v", toks, ref.Tokens)
		}
		if seen != len(ref.Tokens)*len(ref.Tokens[0]) || len(first) != len(ref.Prompts)*ref.Vocab {
			return fail("on_token %d times, first logits %d", seen, len(first))
		}
		num, den := 0.0, 1e-30
		for i, v := range logits {
			r := float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(ref.Offsets[1]+i):])))
			num, den = math.Max(num, math.Abs(float64(v)-r)), math.Max(den, math.Abs(r))
		}
		if num/den >= 1e-4 || len(ids) != len(p) {
			return fail("logits relative error %g, %d ids", num/den, len(ids))
		}
	} else if toks != nil || logits != nil || seen != 0 {
		return fail("outputs off the driver")
	}
	f, err := NewModel(g, c, ModelOptions{Follow: true})
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()
	if info.Rank == 0 {
		toks2, _, err := f.Generate(ref.Prompts, GenerateOptions{MaxNew: len(ref.Tokens[0]), Microbatches: 1, PrefillChunk: 3})
		if err != nil || !reflect.DeepEqual(toks2, ref.Tokens) {
			return fail("follow mode: %v %v", toks2, err)
		}
		// Zero-value options are the library's defaults: 16 new tokens.
		toks0, _, err := f.Generate(ref.Prompts, GenerateOptions{})
		if err != nil || len(toks0[0]) != 16 || !reflect.DeepEqual(toks0[0], ref.Tokens[0][:16]) {
			return fail("zero-value options: %v %v", toks0, err)
		}
		// Steps in flight: prompt 0's prefill and two decode steps give generate's tokens; a seeded draw
		// repeats after SeqRm takes the sequence back to its prompt.
		q := ref.Prompts[0]
		qp, qs, qw := make([]int32, len(q)), make([]int32, len(q)), make([]bool, len(q))
		for i := range q {
			qp[i], qs[i] = int32(i), 9
		}
		qw[len(q)-1] = true
		if _, err := f.Submit(q, qp, qs, qw, nil); err != nil {
			return fail("submit: %v", err)
		}
		r, err := f.Wait()
		if err != nil || len(r.Tokens) != 1 || r.Tokens[0] != ref.Tokens[0][0] || r.SeqIDs[0] != 9 {
			return fail("step: %+v %v", r, err)
		}
		got := []int32{r.Tokens[0]}
		for k := 0; k < 2; k++ {
			if _, err := f.Submit([]int32{got[k]}, []int32{int32(len(q) + k)}, []int32{9}, []bool{true}, nil); err != nil {
				return fail("submit: %v", err)
			}
			if r, err = f.Wait(); err != nil {
				return fail("wait: %v", err)
			}
			got = append(got, r.Tokens[0])
		}
		if !reflect.DeepEqual(got, ref.Tokens[0][:3]) {
			return fail("steps %v, transformers' %v", got, ref.Tokens[0][:3])
		}
		sp := &Sampling{Temperature: 0.8, TopK: 20, Seed: 7, Logprobs: true}
		var draws []int32
		for k := 0; k < 2; k++ {
			if err := f.SeqRm(9, len(q), -1); err != nil {
				return fail("seq_rm: %v", err)
			}
			if _, err := f.Submit([]int32{got[0]}, []int32{int32(len(q))}, []int32{9}, []bool{true}, []*Sampling{sp}); err != nil {
				return fail("submit sampled: %v", err)
			}
			if r, err = f.Wait(); err != nil || r.Logprobs[0] > 0 {
				return fail("wait sampled: %+v %v", r, err)
			}
			draws = append(draws, r.Tokens[0])
		}
		if draws[0] != draws[1] {
			return fail("a seeded draw differs: %v", draws)
		}
		if err := f.Remove(9); err != nil {
			return fail("remove: %v", err)
		}
		if err := f.Stop(); err != nil {
			return fail("stop: %v", err)
		}
	} else if err := f.Follow(60000); err != nil {
		return fail("follow: %v", err)
	}
	fmt.Println("rank", info.Rank, "OK")
	return 0
}

func TestModelTP2PP2MatchesTransformers(t *testing.T) {
	run := os.Getenv("TPPP_RUN")
	if run == "" || os.Getenv("TPPP_FIXTURES") == "" {
		t.Fatal("TPPP_RUN or TPPP_FIXTURES is not set")
	}
	cmd := exec.Command(run, "-n", "4", "--timeout", "120", "--", os.Args[0])
	cmd.Env = append(os.Environ(), "TPPP_GO_RANK=model")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "OK") != 4 {
		t.Fatalf("%v\n%s", err, out)
	}
}
