package api

import (
	"bytes"
	gojson "encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	yamlv2 "go.yaml.in/yaml/v2"
)

// rawDoc is one document of a stream, not yet decoded.
type rawDoc struct {
	data []byte
	src  Source
	json bool  // data is one JSON value, not YAML
	err  error // a problem found while splitting, reported in order
}

// splitManifest cuts a stream into documents and checks the limits that
// need no parsing: the number of documents, their size, NUL bytes, and for
// JSON the nesting depth. A stream whose first character is '{' and whose
// first value is valid JSON is read as a JSON stream; anything else as YAML.
func splitManifest(data []byte) ([]rawDoc, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		if docs, ok := splitJSON(data); ok {
			return docs, nil
		}
	}
	return splitYAML(data)
}

// splitYAML cuts data at lines holding only "---" or "..." (and possibly a
// comment). Content after "---" on the same line is refused, as kubectl
// does: otherwise the YAML parser would see two documents in one piece and
// silently drop the second.
func splitYAML(data []byte) ([]rawDoc, error) {
	var docs []rawDoc
	start, startLine := 0, 1
	emit := func(end int) error {
		chunk := data[start:end]
		first := firstContentLine(chunk)
		if first == 0 {
			return nil // blank lines and comments only
		}
		if len(docs) == MaxDocuments {
			return &DecodeError{Err: fmt.Errorf("%w: the manifest holds more than %d documents", ErrTooLarge, MaxDocuments)}
		}
		src := Source{Doc: len(docs) + 1, Line: startLine + first - 1}
		doc := rawDoc{data: chunk, src: src}
		if i := bytes.IndexByte(chunk, 0); i >= 0 {
			line := startLine + bytes.Count(chunk[:i], []byte("\n"))
			doc.err = &DecodeError{Source: src, Err: fmt.Errorf("NUL byte at line %d: a manifest must be text", line)}
		} else if len(chunk) > MaxDocumentBytes {
			doc.err = &DecodeError{Source: src, Err: fmt.Errorf("%w: the document is %d bytes, more than the limit of %d (1 MiB)", ErrTooLarge, len(chunk), MaxDocumentBytes)}
		}
		docs = append(docs, doc)
		return nil
	}
	line := 1
	for pos := 0; pos < len(data); line++ {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			next = pos + end + 1
		}
		text := data[pos:next]
		if marker, rest, ok := documentMarker(text); ok {
			if marker == "---" && !isBlankOrComment(rest) {
				return nil, &DecodeError{Source: Source{Doc: len(docs) + 1, Line: line},
					Err: fmt.Errorf("content after the document separator %q on line %d; start the document on the next line", marker, line)}
			}
			if err := emit(pos); err != nil {
				return nil, err
			}
			start, startLine = next, line+1
		}
		pos = next
	}
	if err := emit(len(data)); err != nil {
		return nil, err
	}
	return docs, nil
}

// documentMarker reports whether line is a YAML document marker ("---" or
// "...", at the start of the line, followed by nothing or by white space)
// and what follows it.
func documentMarker(line []byte) (marker string, rest []byte, ok bool) {
	for _, m := range []string{"---", "..."} {
		if !bytes.HasPrefix(line, []byte(m)) {
			continue
		}
		rest = line[len(m):]
		if len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r' || rest[0] == '\n' {
			return m, rest, true
		}
	}
	return "", nil, false
}

func isBlankOrComment(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) == 0 || b[0] == '#'
}

// firstContentLine returns the 1-based line of chunk holding something
// other than blanks and comments, or 0 if there is none.
func firstContentLine(chunk []byte) int {
	for n := 1; len(chunk) > 0; n++ {
		line := chunk
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			line, chunk = chunk[:i+1], chunk[i+1:]
		} else {
			chunk = nil
		}
		if !isBlankOrComment(line) {
			return n
		}
	}
	return 0
}

// splitJSON cuts a stream of JSON values, tracking nesting so that a value
// nested deeper than MaxDepth is refused before any decoder sees it. It
// reports ok=false when data does not look like a JSON stream (its first
// value is not valid JSON); it is then read as YAML, as flow-style YAML can
// also start with '{'.
func splitJSON(data []byte) (docs []rawDoc, ok bool) {
	depth, line, start, startLine := 0, 1, -1, 0
	inString, escaped := false, false
	fail := func(err error) ([]rawDoc, bool) {
		src := Source{Doc: len(docs) + 1, Line: startLine}
		if start < 0 {
			src.Line = line
		}
		return append(docs, rawDoc{src: src, err: &DecodeError{Source: src, Err: err}}), true
	}
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == 0 {
			return fail(fmt.Errorf("NUL byte at line %d: a manifest must be text", line))
		}
		if c == '\n' {
			line++
		}
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
		case '"':
			if depth == 0 {
				return fail(errors.New("a manifest document must be a JSON object, not a string"))
			}
			inString = true
		case '{', '[':
			if depth == 0 {
				if len(docs) == MaxDocuments {
					return []rawDoc{{err: &DecodeError{Err: fmt.Errorf("%w: the manifest holds more than %d documents", ErrTooLarge, MaxDocuments)}}}, true
				}
				start, startLine = i, line
			}
			depth++
			if depth > MaxDepth {
				return fail(fmt.Errorf("%w: nesting deeper than %d levels", ErrTooLarge, MaxDepth))
			}
		case '}', ']':
			depth--
			if depth < 0 {
				return fail(fmt.Errorf("invalid JSON at line %d: unexpected %q", line, c))
			}
			if depth == 0 {
				value := data[start : i+1]
				if len(docs) == 0 && !gojson.Valid(value) {
					return nil, false
				}
				src := Source{Doc: len(docs) + 1, Line: startLine}
				doc := rawDoc{data: value, src: src, json: true}
				if len(value) > MaxDocumentBytes {
					doc.err = &DecodeError{Source: src, Err: fmt.Errorf("%w: the document is %d bytes, more than the limit of %d (1 MiB)", ErrTooLarge, len(value), MaxDocumentBytes)}
				}
				docs = append(docs, doc)
				start = -1
			}
		default:
			if depth == 0 {
				if len(docs) == 0 {
					return nil, false
				}
				return fail(fmt.Errorf("invalid JSON at line %d: a manifest document must be a JSON object", line))
			}
		}
	}
	if depth > 0 || inString {
		if len(docs) == 0 {
			return nil, false
		}
		return fail(errors.New("invalid JSON: unexpected end of input"))
	}
	return docs, true
}

// The YAML shape check walks a document with the YAML parser, counting
// nodes and depth with aliases expanded, without building any value: the
// type yamlShape below receives every node and keeps nothing. It stops at
// the first limit crossed, so an alias bomb ("billion laughs") costs a
// bounded walk instead of an exponential expansion. The YAML library calls
// UnmarshalYAML without a way to pass state, so the count lives in
// shapeState, guarded by shapeMu; one check runs at a time.
var (
	shapeMu    sync.Mutex
	shapeState struct {
		nodes, depth, bytes int
	}
)

var (
	errTooDeep      = fmt.Errorf("%w: nesting deeper than %d levels", ErrTooLarge, MaxDepth)
	errTooManyNodes = fmt.Errorf("%w: more than %d YAML nodes once aliases (*name) are expanded", ErrTooLarge, MaxNodes)
	errTooExpanded  = fmt.Errorf("%w: more than %d bytes once aliases (*name) are expanded", ErrTooLarge, MaxExpandedBytes)
)

// checkYAMLShape enforces MaxDepth, MaxNodes and MaxExpandedBytes on one
// YAML document, and reports malformed YAML.
func checkYAMLShape(doc []byte) error {
	shapeMu.Lock()
	defer shapeMu.Unlock()
	shapeState.nodes, shapeState.depth, shapeState.bytes = 0, 0, 0
	var root yamlShape
	err := yamlv2.Unmarshal(doc, &root)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTooLarge):
		return err
	case strings.Contains(err.Error(), "exceeded max depth"):
		return errTooDeep
	case strings.Contains(err.Error(), "excessive aliasing"):
		return errTooManyNodes
	}
	return yamlError(err)
}

type yamlShape struct{}

// UnmarshalYAML counts one node and walks its children: it tries the node
// as a sequence, then as a mapping, then as a scalar. A wrong guess fails
// at once with a type error, without walking anything.
func (yamlShape) UnmarshalYAML(unmarshal func(any) error) error {
	st := &shapeState
	st.nodes++
	st.bytes++
	if st.nodes > MaxNodes {
		return errTooManyNodes
	}
	if st.bytes > MaxExpandedBytes {
		return errTooExpanded
	}
	st.depth++
	defer func() { st.depth-- }()
	if st.depth > MaxDepth {
		return errTooDeep
	}
	var seq []yamlShape
	err := unmarshal(&seq)
	if !isYAMLTypeError(err) {
		return err
	}
	var m map[yamlShape]yamlShape
	err = unmarshal(&m)
	if !isYAMLTypeError(err) {
		return err
	}
	// A scalar: its text is shared with the parser's, not copied.
	var s string
	if err := unmarshal(&s); isYAMLTypeError(err) {
		return nil
	} else if err != nil {
		return err
	}
	st.bytes += len(s)
	if st.bytes > MaxExpandedBytes {
		return errTooExpanded
	}
	return nil
}

func isYAMLTypeError(err error) bool {
	var te *yamlv2.TypeError
	return errors.As(err, &te)
}
