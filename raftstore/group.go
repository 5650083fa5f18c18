package raftstore

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/stead-io/stead/api"
)

// Group commit. The leader's writes go to Raft through one committer,
// which lets at most entriesInFlight entries that are not full be in
// flight at once. Writes that arrive while they are share the next entry
// (cmdTxns or cmdBinTxns), so that under load Raft's per-entry costs
// (storing, syncing and sending each entry) are paid once for many writes. A full entry
// (maxEntryWrites writes or maxEntryBytes) goes at once: waiting would
// not make it bigger. A write alone, as every write of a single client
// is, goes as an entry of one transaction, with no wait. Entries are in
// the newest format every server of the configuration reads.
const (
	entriesInFlight = 2
	maxEntryWrites  = 128
	maxEntryBytes   = 256 << 10
	// readersCheckEvery is how often the leader looks again at which log
	// version every server reads.
	readersCheckEvery = time.Second
)

// pending is one write waiting for its entry to be applied.
type pending struct {
	// data is the transaction's encoding for entries of log version
	// version (see marshalTxn).
	data    []byte
	version int
	// changes are the keys its puts and deletes change, ensures those its
	// ensures may create. Two writes share an entry only if neither may
	// change an object the other may change (two ensures may share one).
	changes, ensures []string
	timeout          time.Duration
	start            time.Time
	done             chan applied // buffered: the committer never waits on it
}

// applied is the outcome of a pending write: its Result, or the error of
// the entry that carried it.
type applied struct {
	res Result
	err error
}

func newPending(txn Txn, version int, timeout time.Duration) (*pending, error) {
	data, err := marshalTxn(txn, version)
	if err != nil {
		return nil, err
	}
	p := &pending{data: data, version: version, timeout: timeout, start: time.Now(), done: make(chan applied, 1)}
	for _, op := range txn.Ops {
		key := string(objectKey(op.Kind, op.Namespace, op.Name))
		if op.Type == OpEnsure {
			p.ensures = append(p.ensures, key)
		} else {
			p.changes = append(p.changes, key)
		}
	}
	return p, nil
}

// committer submits the leader's writes to Raft, several to an entry when
// they arrive together.
type committer struct {
	raft    *raft.Raft
	queue   chan *pending
	slots   chan struct{} // one per entry in flight that was not full
	metrics *storeMetrics
	// readers returns the newest log version every server of the
	// configuration reads; asked at most every readersCheckEvery.
	readers func() int
	// mu guards what readers said last (version) and when (checkedAt).
	mu          sync.Mutex
	checkedAt   time.Time
	version     int
	entriesWait sync.WaitGroup
}

func newCommitter(r *raft.Raft, m *storeMetrics, readers func() int) *committer {
	return &committer{
		raft:    r,
		queue:   make(chan *pending, 4*maxEntryWrites),
		slots:   make(chan struct{}, entriesInFlight),
		metrics: m,
		readers: readers,
	}
}

// logVersion returns the log version to write entries in: what readers
// said when last asked, at most readersCheckEvery ago. It is safe for
// concurrent use.
func (c *committer) logVersion() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checkedAt) >= readersCheckEvery {
		c.version, c.checkedAt = c.readers(), now
	}
	return c.version
}

// run submits queued writes until done is closed, then fails those still
// queued with raft.ErrRaftShutdown once the entries in flight resolve.
func (c *committer) run(done <-chan struct{}) {
	defer c.entriesWait.Wait()
	var waiting []*pending
	for {
		if len(waiting) == 0 {
			select {
			case p := <-c.queue:
				waiting = append(waiting, p)
			case <-done:
				return
			}
		}
		// The next entry starts once one in flight is done, and what
		// arrives meanwhile joins it; but waiting makes a full entry no
		// bigger, so a full one starts at once.
		slot := false
		for !slot && !c.full(waiting) {
			select {
			case c.slots <- struct{}{}:
				slot = true
			case p := <-c.queue:
				waiting = append(waiting, p)
			case <-done:
				c.fail(waiting, raft.ErrRaftShutdown)
				return
			}
		}
		for drained := false; !drained; {
			select {
			case p := <-c.queue:
				waiting = append(waiting, p)
			default:
				drained = true
			}
		}
		var entry []*pending
		entry, waiting = c.take(waiting)
		c.submit(entry, slot)
	}
}

// full reports whether the writes waiting fill an entry: as many writes
// or bytes as one holds, or any write encoded for log version 1, whose
// entries carry one each.
func (c *committer) full(waiting []*pending) bool {
	if waiting[0].version < 2 || len(waiting) >= maxEntryWrites {
		return true
	}
	size := 0
	for _, p := range waiting {
		if size += len(p.data); size >= maxEntryBytes {
			return true
		}
	}
	return false
}

// take splits off the writes of the next entry: the oldest, and after it
// as many as fit, up to the first that changes an object one before it
// changes or is encoded for another log version. It takes one alone if
// it is encoded for log version 1.
func (c *committer) take(waiting []*pending) (entry, rest []*pending) {
	if len(waiting) == 1 || waiting[0].version < 2 {
		return waiting[:1], waiting[1:]
	}
	// Keys changed by the entry so far (true), or only ensured (false).
	keys := map[string]bool{}
	size, n := 0, 0
	for _, p := range waiting {
		if n == maxEntryWrites || (n > 0 && size+len(p.data) > maxEntryBytes) || p.version != waiting[0].version || clashes(p, keys) {
			break
		}
		for _, k := range p.ensures {
			if _, ok := keys[k]; !ok {
				keys[k] = false
			}
		}
		for _, k := range p.changes {
			keys[k] = true
		}
		size += len(p.data)
		n++
	}
	return waiting[:n], waiting[n:]
}

// clashes reports whether p may change an object the writes of keys may
// change: keys maps what they change to true, what they only ensure to
// false.
func clashes(p *pending, keys map[string]bool) bool {
	for _, k := range p.changes {
		if _, ok := keys[k]; ok {
			return true
		}
	}
	for _, k := range p.ensures {
		if keys[k] {
			return true
		}
	}
	return false
}

// submit hands entry to Raft and, without waiting, arranges for each of
// its writes to get its outcome and for its slot, if it took one, to be
// freed.
func (c *committer) submit(entry []*pending, slot bool) {
	var data []byte
	timeout, version := entry[0].timeout, entry[0].version
	if len(entry) == 1 {
		data = txnEntry(entry[0].data, version)
	} else {
		txns := make([][]byte, len(entry))
		for i, p := range entry {
			txns[i] = p.data
			if p.timeout == 0 || (timeout != 0 && p.timeout > timeout) {
				timeout = p.timeout
			}
		}
		data = txnsEntry(txns, version)
	}
	c.metrics.entryWrites.Observe(float64(len(entry)))
	f := c.raft.Apply(data, timeout)
	c.entriesWait.Add(1)
	go func() {
		defer c.entriesWait.Done()
		err := f.Error()
		if slot {
			<-c.slots
		}
		if err != nil {
			c.fail(entry, err)
			return
		}
		results, err := entryResults(f.Response(), len(entry))
		if err != nil {
			c.fail(entry, err)
			return
		}
		for i, p := range entry {
			c.metrics.apply.Observe(time.Since(p.start).Seconds())
			p.done <- applied{res: results[i]}
		}
	}()
}

// entryResults returns the results of an entry of n writes from its
// future's response.
func entryResults(resp any, n int) ([]Result, error) {
	switch r := resp.(type) {
	case Result:
		if n == 1 {
			return []Result{r}, nil
		}
	case []Result:
		if len(r) == n {
			return r, nil
		}
	}
	return nil, fmt.Errorf("unexpected response %T to an entry of %d writes", resp, n)
}

func (c *committer) fail(ps []*pending, err error) {
	for _, p := range ps {
		p.done <- applied{err: err}
	}
}

// readersLogVersion returns the newest log version that every server of
// the Raft configuration has recorded, in its server record, that it
// reads: 1 when a server has recorded none, or when the configuration
// cannot be read.
func (s *Store) readersLogVersion() int {
	members, err := s.Members()
	if err != nil {
		return 1
	}
	v := s.View()
	version := LogVersion
	for _, m := range members {
		obj, ok := v.Get(Servers, "", m.ID)
		srv, isServer := obj.(*api.Server)
		if !ok || !isServer {
			return 1
		}
		version = min(version, max(1, srv.Spec.LogVersion))
	}
	return version
}
