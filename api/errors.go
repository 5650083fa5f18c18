package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ErrInvalid is matched by errors.Is for every error that refuses a user's
// manifest or object: decoding errors (*DecodeError) and validation errors
// (*InvalidError). Such input changes nothing; the user has to fix it.
var ErrInvalid = errors.New("invalid manifest")

// ErrTooLarge is matched by errors.Is when input is refused because it
// exceeds one of the limits checked before it is decoded: total size,
// number of documents, size of one document, nesting depth, or the
// expansion of YAML aliases. Such errors also match ErrInvalid.
var ErrTooLarge = errors.New("manifest exceeds a limit")

// Source says where in a manifest stream an object or a problem was found.
// The zero Source means "not from a stream" (for example an object that the
// server validates on its own).
type Source struct {
	// Doc is the 1-based number of the document in the stream. Documents
	// holding only comments or blank lines are not counted.
	Doc int
	// Line is the 1-based line of the stream where the document starts, or
	// 0 when unknown.
	Line int
	// Item is the 1-based position of the object in the items of a List
	// document, or 0 when the document is not a List.
	Item int
}

// String renders s as "document 2 (line 14), item 3"; it is empty for the
// zero Source.
func (s Source) String() string {
	if s.Doc == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("document ")
	b.WriteString(strconv.Itoa(s.Doc))
	if s.Line > 0 {
		b.WriteString(" (line ")
		b.WriteString(strconv.Itoa(s.Line))
		b.WriteString(")")
	}
	if s.Item > 0 {
		b.WriteString(", item ")
		b.WriteString(strconv.Itoa(s.Item))
	}
	return b.String()
}

// DecodeError is a manifest that could not be turned into an object:
// malformed YAML or JSON, a limit exceeded, an unknown or duplicate field, a
// value of the wrong type, a missing or unsupported apiVersion and kind, or
// a namespace that conflicts with the one requested.
type DecodeError struct {
	Source
	// Kind and Name identify the object when they could be read, so that a
	// long stream's errors can be told apart.
	Kind string
	Name string
	// Path is the field the problem is about, in Kubernetes' notation
	// ("spec.template.spec.containers[0].imagePullPolcy"), or "" when the
	// problem is with the document as a whole.
	Path string
	// Err says what is wrong. It wraps ErrTooLarge for exceeded limits.
	Err error
}

// Error reads like
// `document 2 (line 14): StatefulSet "web": spec.foo: unknown field`.
func (e *DecodeError) Error() string {
	var b strings.Builder
	if s := e.Source.String(); s != "" {
		b.WriteString(s)
		b.WriteString(": ")
	}
	if e.Kind != "" {
		b.WriteString(e.Kind)
		if e.Name != "" {
			b.WriteString(" ")
			b.WriteString(strconv.Quote(shorten(e.Name)))
		}
		b.WriteString(": ")
	} else if e.Name != "" {
		b.WriteString(strconv.Quote(shorten(e.Name)))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("cannot decode")
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports that every decoding error is an ErrInvalid.
func (e *DecodeError) Is(target error) bool { return target == ErrInvalid }

// InvalidError is an object that decoded but breaks the rules of its kind.
// It holds every problem found, each with its field path, in the wording of
// the Kubernetes API server.
type InvalidError struct {
	Source
	// Group and Kind name the object's type: "apps" and "StatefulSet", or
	// "" and "Service".
	Group string
	Kind  string
	// Namespace and Name identify the object.
	Namespace string
	Name      string
	// Errors lists the problems; it is never empty.
	Errors field.ErrorList
}

// Error reads like kubectl's:
// `StatefulSet.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`,
// several problems being joined as `[a, b]`, and the document prefixed when
// the object came from a stream.
func (e *InvalidError) Error() string {
	msg := e.message()
	if s := e.Source.String(); s != "" {
		return s + ": " + msg
	}
	return msg
}

func (e *InvalidError) message() string {
	gk := schema.GroupKind{Group: e.Group, Kind: e.Kind}.String()
	if agg := e.Errors.ToAggregate(); agg != nil {
		return fmt.Sprintf("%s %q is invalid: %v", gk, shorten(e.Name), agg)
	}
	return fmt.Sprintf("%s %q is invalid", gk, shorten(e.Name))
}

// Is reports that every validation error is an ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Status renders e as the Kubernetes API server renders a validation
// failure (reason Invalid, code 422, one cause per field), so that the HTTP
// API can return it and apierrors.IsInvalid recognises it.
func (e *InvalidError) Status() metav1.Status {
	causes := make([]metav1.StatusCause, 0, len(e.Errors))
	for _, fe := range e.Errors {
		causes = append(causes, metav1.StatusCause{
			Type:    metav1.CauseType(fe.Type),
			Message: fe.ErrorBody(),
			Field:   fe.Field,
		})
	}
	return metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  e.Error(),
		Reason:   metav1.StatusReasonInvalid,
		Code:     http.StatusUnprocessableEntity,
		Details: &metav1.StatusDetails{
			Group:  e.Group,
			Kind:   e.Kind,
			Name:   e.Name,
			Causes: causes,
		},
	}
}

// maxValueInMessage bounds how much of a bad value an error message
// repeats: enough to recognise it, not a megabyte of it.
const maxValueInMessage = 128

// shorten cuts a long string for an error message, on a rune boundary.
func shorten(s string) string {
	if len(s) <= maxValueInMessage {
		return s
	}
	cut := maxValueInMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:cut], len(s))
}

// newInvalid returns nil for an empty list, else an *InvalidError about obj.
// Long string values are shortened in the errors.
func newInvalid(group, kind string, meta *metav1.ObjectMeta, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	for _, fe := range errs {
		if v, ok := fe.BadValue.(string); ok {
			fe.BadValue = shorten(v)
		}
	}
	return &InvalidError{
		Group:     group,
		Kind:      kind,
		Namespace: meta.Namespace,
		Name:      meta.Name,
		Errors:    errs,
	}
}
