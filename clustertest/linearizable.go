package clustertest

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// C2 (RELIABILITY 6.2): the history of the API's puts and consistent gets
// must be linearizable. The model is one register per key, Porcupine's
// partitions: a key starts absent, a put sets it to the put's value (each
// put has a value of its own and creates a fresh key), a get returns what
// it holds.

// regInput is the call of one operation on a key's register.
type regInput struct {
	Key string
	// Put writes Value; otherwise the operation reads.
	Put   bool
	Value string
	// Op and Server say which operation of the history it is.
	Op     int
	Server string
}

// regOutput is what a get returned.
type regOutput struct {
	Found bool
	Value string
}

// registerModel is C2's model. A state is the register's value, "" for
// absent (puts never write "").
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(regInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.Put {
			return true, in.Value
		}
		out := output.(regOutput)
		cur := state.(string)
		return out.Found == (cur != "") && out.Value == cur, cur
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.Put {
			return fmt.Sprintf("op %d via %s: put %s = %s", in.Op, in.Server, in.Key, in.Value)
		}
		out := output.(regOutput)
		if !out.Found {
			return fmt.Sprintf("op %d via %s: get %s: absent", in.Op, in.Server, in.Key)
		}
		return fmt.Sprintf("op %d via %s: get %s: %s", in.Op, in.Server, in.Key, out.Value)
	},
	DescribeState: func(state any) string {
		if state.(string) == "" {
			return "absent"
		}
		return state.(string)
	},
}

// c2Operations turns a history into Porcupine's operations. A get counts
// only if it ended ok: one that failed or whose answer was lost says
// nothing. A refused put (fail) is left out, so that a get seeing its
// value, which nothing else writes, is a violation. A put whose outcome is
// unknown (info, or still pending) may take effect at any time after its
// call, or never: it returns at +∞.
func c2Operations(ops []Op) []porcupine.Operation {
	clients := map[string]int{}
	var out []porcupine.Operation
	for _, op := range ops {
		in := regInput{Key: op.Key, Op: op.ID, Server: op.Server}
		ret := op.Complete
		var res regOutput
		switch {
		case op.Kind == KindPut && op.Outcome == Fail:
			continue
		case op.Kind == KindPut:
			in.Put, in.Value = true, op.Value
			if op.Outcome != OK {
				ret = math.MaxInt64
			}
		case op.Kind == KindGet && op.Outcome == OK:
			res = regOutput{Found: op.Found, Value: op.Value}
		default:
			continue
		}
		// One client per kind and server: Porcupine's visualization
		// draws a line for each.
		client := op.Kind + " " + op.Server
		if _, ok := clients[client]; !ok {
			clients[client] = len(clients)
		}
		out = append(out, porcupine.Operation{ClientId: clients[client], Input: in, Call: op.Invoke, Output: res, Return: ret})
	}
	return out
}

// C2Result is the verdict of CheckLinearizable.
type C2Result struct {
	// Result is Porcupine's: Ok, Illegal, or Unknown when the check ran
	// out of time.
	Result porcupine.CheckResult
	// Keys are the keys whose operations are not linearizable, in the
	// order of their first operation.
	Keys []string
	// Info is what Porcupine's visualization draws.
	Info porcupine.LinearizationInfo
	// Operations counts the operations checked.
	Operations int
}

// CheckLinearizable is C2 over a history, within timeout: a pure function
// of the history.
func CheckLinearizable(ops []Op, timeout time.Duration) C2Result {
	pops := c2Operations(ops)
	res, info := porcupine.CheckOperationsVerbose(registerModel, pops, timeout)
	r := C2Result{Result: res, Info: info, Operations: len(pops)}
	if res != porcupine.Illegal {
		return r
	}
	// Name the keys at fault: each partition is small, check it alone.
	single := registerModel
	single.Partition = nil
	for _, part := range registerModel.Partition(pops) {
		if !porcupine.CheckOperations(single, part) {
			r.Keys = append(r.Keys, part[0].Input.(regInput).Key)
		}
	}
	return r
}

// c2Timeout bounds Porcupine's search; the register of one key has a
// handful of operations, so the whole check takes far less.
const c2Timeout = 60 * time.Second

// CheckC2 checks that h is linearizable (CheckLinearizable). On a
// violation it writes Porcupine's visualization of the history to
// c2.html among the cluster's logs (kept when the test fails) and names it
// in the error, with the operations of the first keys at fault.
func (c *Cluster) CheckC2(h *History) error {
	ops := h.Ops()
	start := time.Now()
	r := CheckLinearizable(ops, c2Timeout)
	found, absent := 0, 0
	for _, op := range ops {
		switch {
		case op.Kind != KindGet || op.Outcome != OK:
		case op.Found:
			found++
		default:
			absent++
		}
	}
	c.Logf("C2: %d operations checked in %v (gets that found a value %d, found none %d): %s",
		r.Operations, time.Since(start).Round(time.Millisecond), found, absent, r.Result)
	switch r.Result {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return fmt.Errorf("linearizability of %d operations undecided within %v", r.Operations, c2Timeout)
	}
	path := filepath.Join(c.Dir, "logs", "c2.html")
	var errs []error
	errs = append(errs, fmt.Errorf("history not linearizable for %d keys %v", len(r.Keys), r.Keys))
	if err := writeVisualization(path, r.Info); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, fmt.Errorf("visualization in %s (kept as %s)", path, filepath.Join(os.TempDir(), c.ID+"-logs", "logs_c2.html")))
	}
	for i, k := range r.Keys {
		if i == 3 {
			break
		}
		errs = append(errs, fmt.Errorf("%s:\n%s", k, describeKey(ops, k)))
	}
	return errors.Join(errs...)
}

func writeVisualization(path string, info porcupine.LinearizationInfo) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("visualization of C2: %w", err)
	}
	if err := porcupine.Visualize(registerModel, info, f); err != nil {
		f.Close()
		return fmt.Errorf("visualization of C2 into %s: %w", path, err)
	}
	return f.Close()
}

// describeKey lists the operations of history ops on key, one a line,
// with times relative to the first one's invocation.
func describeKey(ops []Op, key string) string {
	var lines []string
	var t0 int64
	for _, op := range ops {
		if op.Key != key {
			continue
		}
		if t0 == 0 {
			t0 = op.Invoke
		}
		ms := func(t int64) string {
			if t == 0 {
				return "…"
			}
			return fmt.Sprintf("%.1fms", float64(t-t0)/1e6)
		}
		what := op.Kind
		switch {
		case op.Kind == KindPut:
			what += " " + op.Value
		case op.Outcome == OK && op.Found:
			what += " -> " + op.Value
		case op.Outcome == OK:
			what += " -> absent"
		}
		out := string(op.Outcome)
		if op.Outcome == Pending {
			out = "pending"
		}
		line := fmt.Sprintf("  op %d via %s [%s, %s] %s: %s", op.ID, op.Server, ms(op.Invoke), ms(op.Complete), out, what)
		if op.Index > 0 {
			line += fmt.Sprintf(" at index %d", op.Index)
		}
		if op.Err != "" {
			line += " (" + op.Err + ")"
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}
