package raftstore

// The FSM remembers the result of the last DefaultDedupLimit request IDs
// so that a retried write applies once (RELIABILITY R6). The table is
// replicated state: every server evicts the same IDs at the same index,
// and snapshots carry it, oldest first.
//
// It is kept in two parts. requestLog, in each state, lists the records
// oldest first, for snapshots and backups taken from any goroutine.
// requestIndex, owned by the FSM's goroutine, finds a record by ID. Both
// change in O(1) per request; a persistent tree did the same at the cost
// of copying a path of nodes for each random ID, on every server.

// requestRecord is the remembered result of one request ID.
type requestRecord struct {
	Index uint64    `json:"index"`
	Err   *TxnError `json:"error,omitempty"`
}

func (r requestRecord) result() Result {
	if r.Err == nil {
		return Result{Index: r.Index}
	}
	return Result{Index: r.Index, Err: r.Err}
}

type requestEntry struct {
	id  string
	rec requestRecord
}

// requestLog is the remembered requests of one state, oldest first:
// buf[start:]. States share buf. The FSM only appends past the end of
// every published log, or to a new buffer, and only moves start forward
// in its own copy, so a published log never changes under its readers.
type requestLog struct {
	buf   []requestEntry
	start int
}

// entries returns the records, oldest first. The caller must not modify
// them.
func (l requestLog) entries() []requestEntry { return l.buf[l.start:] }

func (l requestLog) len() int { return len(l.buf) - l.start }

// add appends e and returns the new log and the IDs it dropped to stay
// within limit, oldest first.
func (l requestLog) add(e requestEntry, limit int) (requestLog, []requestEntry) {
	if len(l.buf) == cap(l.buf) {
		// A new buffer with room for as many appends again as the table
		// holds, so copying is O(1) per request on average.
		nb := make([]requestEntry, 0, max(2*limit, 16))
		l.buf = append(nb, l.entries()...)
		l.start = 0
	}
	l.buf = append(l.buf, e)
	var dropped []requestEntry
	if over := l.len() - limit; over > 0 {
		dropped = l.buf[l.start : l.start+over]
		l.start += over
	}
	return l, dropped
}

// requestIndex finds a remembered request by ID. Only the FSM's
// goroutine uses it.
type requestIndex map[string]requestRecord

// indexRequests returns the index of log.
func indexRequests(log requestLog) requestIndex {
	ix := make(requestIndex, log.len())
	for _, e := range log.entries() {
		ix[e.id] = e.rec
	}
	return ix
}
