package api

import (
	"bytes"
	gojson "encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	appsv1beta1 "k8s.io/api/apps/v1beta1"
	appsv1beta2 "k8s.io/api/apps/v1beta2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Limits on a manifest, checked before any document is decoded, so that a
// hostile or broken input costs bounded time and memory.
const (
	// MaxManifestBytes bounds a whole stream.
	MaxManifestBytes = 4 << 20
	// MaxDocuments bounds the number of documents in a stream.
	MaxDocuments = 1000
	// MaxDocumentBytes bounds one document, as etcd bounds one Kubernetes
	// object (1.5 MiB).
	MaxDocumentBytes = 1 << 20
	// MaxDepth bounds the nesting of mappings and lists in a document. The
	// deepest field of a StatefulSet is about 12 levels down.
	MaxDepth = 64
	// MaxNodes bounds the number of YAML nodes (mappings, lists, keys and
	// values) of one document once its aliases are expanded.
	MaxNodes = 100_000
	// MaxExpandedBytes bounds the scalar bytes of one document once its
	// aliases are expanded. A document without aliases never exceeds it.
	MaxExpandedBytes = 2 * MaxDocumentBytes
)

// DecodeOptions tune DecodeManifestsWith.
type DecodeOptions struct {
	// Namespace is given to objects whose manifest names no namespace, as
	// kubectl's -n does; an object naming another namespace is then
	// refused. Empty means objects without a namespace go to "default".
	Namespace string
}

// DefaultNamespace is where objects go when neither the manifest nor the
// options name a namespace.
const DefaultNamespace = metav1.NamespaceDefault

// DecodeManifests is DecodeManifestsWith with no options.
func DecodeManifests(data []byte) ([]Object, error) {
	return DecodeManifestsWith(data, DecodeOptions{})
}

// DecodeManifestsWith decodes a manifest stream into objects ready to be
// stored: defaulted and validated, in the order of the stream.
//
// The stream is either YAML documents separated by "---" lines, or JSON
// objects one after another; a document may be a v1 List whose items are
// decoded in turn. Documents holding only comments are skipped, so a
// stream of comments gives no objects and no error. Supported kinds are
// StatefulSet (apps/v1, and the apps/v1beta1 and apps/v1beta2 of older
// documentation, converted to apps/v1 with their own defaults) and Service
// (v1). The objects returned are *appsv1.StatefulSet and *corev1.Service
// with TypeMeta set to apps/v1 and v1, a namespace, no status and no
// server-owned metadata (uid, generation, timestamps, managedFields), which
// the server sets.
//
// Any problem refuses the whole stream, including the same object defined
// twice. The error is a *DecodeError or an *InvalidError, or when there
// are several problems their errors.Join; each matches ErrInvalid and says
// which document it is about. Limits (MaxManifestBytes, MaxDocuments,
// MaxDocumentBytes, MaxDepth, MaxNodes, MaxExpandedBytes) are checked
// before decoding and also match ErrTooLarge.
func DecodeManifestsWith(data []byte, opts DecodeOptions) ([]Object, error) {
	if len(data) > MaxManifestBytes {
		return nil, &DecodeError{Err: fmt.Errorf("%w: the manifest is %d bytes, more than the limit of %d (4 MiB)", ErrTooLarge, len(data), MaxManifestBytes)}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	docs, err := splitManifest(data)
	if err != nil {
		return nil, err
	}
	d := decoder{opts: opts}
	var objs []Object
	var errs []error
	seen := map[objectKey]Source{}
	for _, doc := range docs {
		got, err := d.decodeDocument(doc)
		if err != nil {
			errs = append(errs, err)
			if errors.Is(err, ErrTooLarge) {
				break
			}
			continue
		}
		for _, g := range got {
			// The same object twice would make the outcome depend on the
			// order in which they are applied.
			key := objectKey{g.obj.GetObjectKind().GroupVersionKind().Kind, g.obj.GetNamespace(), g.obj.GetName()}
			if first, dup := seen[key]; dup {
				errs = append(errs, &DecodeError{Source: g.src, Kind: key.kind, Name: key.name, Path: "metadata.name",
					Err: fmt.Errorf("%s %s/%s is also defined by %s", key.kind, key.namespace, key.name, first)})
				continue
			}
			seen[key] = g.src
			objs = append(objs, g.obj)
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return objs, nil
}

// joinErrors returns a lone error as itself, several as their join.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

type decoder struct {
	opts DecodeOptions
}

type objectKey struct {
	kind, namespace, name string
}

// decoded is an object and where it was found.
type decoded struct {
	obj Object
	src Source
}

// decodeDocument checks one document against the limits, turns YAML into
// JSON and decodes it.
func (d decoder) decodeDocument(doc rawDoc) ([]decoded, error) {
	if doc.err != nil {
		return nil, doc.err
	}
	js := doc.data
	if !doc.json {
		if err := checkYAMLShape(doc.data); err != nil {
			return nil, &DecodeError{Source: doc.src, Err: err}
		}
		var err error
		js, err = yaml.YAMLToJSONStrict(doc.data)
		if err != nil {
			return nil, &DecodeError{Source: doc.src, Err: yamlError(err)}
		}
	}
	js = bytes.TrimSpace(js)
	if bytes.Equal(js, []byte("null")) {
		return nil, nil // an empty document, such as a lone "~"
	}
	return d.decodeJSON(js, doc.src)
}

// yamlError rewords the YAML library's errors.
func yamlError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	return fmt.Errorf("invalid YAML: %s", msg)
}

// typeMeta is what is read of a document before its kind is known.
type typeMeta struct {
	apiVersion, kind, name string
}

func (d decoder) decodeJSON(js []byte, src Source) ([]decoded, error) {
	if len(js) == 0 || js[0] != '{' {
		return nil, &DecodeError{Source: src, Err: fmt.Errorf("a manifest document must be a mapping with apiVersion and kind, not %s", jsonKind(js))}
	}
	tm, err := readTypeMeta(js, src)
	if err != nil {
		return nil, err
	}
	switch {
	case tm.apiVersion == "" && tm.kind == "":
		return nil, &DecodeError{Source: src, Name: tm.name, Err: errors.New("apiVersion and kind are not set")}
	case tm.apiVersion == "":
		return nil, &DecodeError{Source: src, Kind: tm.kind, Name: tm.name, Path: "apiVersion", Err: errors.New("apiVersion is not set")}
	case tm.kind == "":
		return nil, &DecodeError{Source: src, Name: tm.name, Path: "kind", Err: fmt.Errorf("kind is not set (apiVersion %s)", tm.apiVersion)}
	}

	var obj Object
	switch {
	case tm.kind == "List" && tm.apiVersion == "v1":
		if src.Item > 0 {
			return nil, &DecodeError{Source: src, Kind: tm.kind, Err: errors.New("a List may not hold another List")}
		}
		return d.decodeList(js, src)
	case tm.kind == KindStatefulSet && tm.apiVersion == APIVersionApps:
		set := &appsv1.StatefulSet{}
		if err := decodeStrict(js, set, src, tm); err != nil {
			return nil, err
		}
		obj = set
	case tm.kind == KindStatefulSet && tm.apiVersion == "apps/v1beta1":
		beta := &appsv1beta1.StatefulSet{}
		if err := decodeStrict(js, beta, src, tm); err != nil {
			return nil, err
		}
		beta.Status = appsv1beta1.StatefulSetStatus{}
		defaultStatefulSetV1beta1(beta)
		set, err := convertStatefulSet(beta, src, tm)
		if err != nil {
			return nil, err
		}
		obj = set
	case tm.kind == KindStatefulSet && tm.apiVersion == "apps/v1beta2":
		beta := &appsv1beta2.StatefulSet{}
		if err := decodeStrict(js, beta, src, tm); err != nil {
			return nil, err
		}
		beta.Status = appsv1beta2.StatefulSetStatus{}
		set, err := convertStatefulSet(beta, src, tm)
		if err != nil {
			return nil, err
		}
		obj = set
	case tm.kind == KindService && tm.apiVersion == APIVersionCore:
		svc := &corev1.Service{}
		if err := decodeStrict(js, svc, src, tm); err != nil {
			return nil, err
		}
		obj = svc
	default:
		return nil, &DecodeError{Source: src, Name: tm.name, Err: fmt.Errorf(
			"kind %q (%s) is not supported; supported kinds: StatefulSet (apps/v1, apps/v1beta1, apps/v1beta2), Service (v1)",
			tm.kind, tm.apiVersion)}
	}

	if err := d.setNamespace(obj, src, tm); err != nil {
		return nil, err
	}
	if err := prepare(obj); err != nil {
		var inv *InvalidError
		if errors.As(err, &inv) {
			inv.Source = src
		}
		return nil, err
	}
	return []decoded{{obj, src}}, nil
}

// prepare makes a freshly decoded object ready to store: it drops what the
// server owns, applies the defaults and validates.
func prepare(obj Object) error {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		o.TypeMeta = metav1.TypeMeta{APIVersion: APIVersionApps, Kind: KindStatefulSet}
		o.Status = appsv1.StatefulSetStatus{}
		clearServerFields(&o.ObjectMeta)
		clearServerFields(&o.Spec.Template.ObjectMeta)
		for i := range o.Spec.VolumeClaimTemplates {
			clearServerFields(&o.Spec.VolumeClaimTemplates[i].ObjectMeta)
			o.Spec.VolumeClaimTemplates[i].Status = corev1.PersistentVolumeClaimStatus{}
		}
		DefaultStatefulSet(o)
		return ValidateStatefulSet(o)
	case *corev1.Service:
		o.TypeMeta = metav1.TypeMeta{APIVersion: APIVersionCore, Kind: KindService}
		o.Status = corev1.ServiceStatus{}
		clearServerFields(&o.ObjectMeta)
		DefaultService(o)
		return ValidateService(o)
	}
	return fmt.Errorf("unexpected object type %T", obj)
}

// clearServerFields drops the metadata only the server may set. A manifest
// copied from `kubectl get -o yaml` carries them; they mean nothing in a
// request, and a deletionTimestamp in one must never delete anything.
func clearServerFields(m *metav1.ObjectMeta) {
	m.UID = ""
	m.Generation = 0
	m.CreationTimestamp = metav1.Time{}
	m.DeletionTimestamp = nil
	m.DeletionGracePeriodSeconds = nil
	m.ManagedFields = nil
	m.SelfLink = ""
}

// setNamespace applies the namespace rules of kubectl: the options'
// namespace (or "default") for objects that name none, and a refusal for
// objects that name another than the one requested.
func (d decoder) setNamespace(obj Object, src Source, tm typeMeta) error {
	ns := obj.GetNamespace()
	switch {
	case ns == "" && d.opts.Namespace != "":
		obj.SetNamespace(d.opts.Namespace)
	case ns == "":
		obj.SetNamespace(DefaultNamespace)
	case d.opts.Namespace != "" && ns != d.opts.Namespace:
		return &DecodeError{Source: src, Kind: tm.kind, Name: tm.name, Path: "metadata.namespace", Err: fmt.Errorf(
			"the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation",
			ns, d.opts.Namespace, ns)}
	}
	return nil
}

// decodeList decodes the items of a v1 List, each as its own document.
func (d decoder) decodeList(js []byte, src Source) ([]decoded, error) {
	var list struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ListMeta     `json:"metadata,omitempty"`
		Items           []gojson.RawMessage `json:"items"`
	}
	if err := decodeStrict(js, &list, src, typeMeta{kind: "List"}); err != nil {
		return nil, err
	}
	var objs []decoded
	var errs []error
	for i, item := range list.Items {
		itemSrc := src
		itemSrc.Item = i + 1
		got, err := d.decodeJSON(bytes.TrimSpace(item), itemSrc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, got...)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return objs, nil
}

// readTypeMeta reads apiVersion, kind and metadata.name without decoding
// the rest.
func readTypeMeta(js []byte, src Source) (typeMeta, error) {
	var top map[string]gojson.RawMessage
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &top); err != nil {
		return typeMeta{}, &DecodeError{Source: src, Err: jsonError(err)}
	}
	var tm typeMeta
	for _, f := range []struct {
		key string
		dst *string
	}{{"apiVersion", &tm.apiVersion}, {"kind", &tm.kind}} {
		raw, ok := top[f.key]
		if !ok || bytes.Equal(raw, []byte("null")) {
			continue
		}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, f.dst); err != nil {
			return typeMeta{}, &DecodeError{Source: src, Path: f.key, Err: fmt.Errorf("must be a string, not %s", jsonKind(raw))}
		}
	}
	if raw, ok := top["metadata"]; ok {
		var meta struct {
			Name string `json:"name"`
		}
		// A malformed metadata is reported by the strict decoding; only a
		// readable name is of use here.
		if sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &meta) == nil {
			tm.name = meta.Name
		}
	}
	return tm, nil
}

// decodeStrict decodes js into obj case-sensitively, refusing unknown and
// duplicate fields with their paths.
func decodeStrict(js []byte, obj any, src Source, tm typeMeta) error {
	strictErrs, err := sigsjson.UnmarshalStrict(js, obj)
	if err != nil {
		de := &DecodeError{Source: src, Kind: tm.kind, Name: tm.name, Err: jsonError(err)}
		var te *gojson.UnmarshalTypeError
		if errors.As(err, &te) {
			de.Path = te.Field
		}
		return de
	}
	if len(strictErrs) == 0 {
		return nil
	}
	errs := make([]error, 0, len(strictErrs))
	for _, se := range strictErrs {
		de := &DecodeError{Source: src, Kind: tm.kind, Name: tm.name, Err: se}
		if fe, ok := se.(sigsjson.FieldError); ok {
			de.Path = fe.FieldPath()
			switch {
			case strings.HasPrefix(se.Error(), "unknown field"):
				de.Err = errUnknownField
			case strings.HasPrefix(se.Error(), "duplicate field"):
				de.Err = errDuplicateField
			}
		}
		errs = append(errs, de)
	}
	return joinErrors(errs)
}

var (
	errUnknownField   = errors.New("unknown field")
	errDuplicateField = errors.New("duplicate field")
)

// jsonError rewords the JSON decoder's errors without the Go type names.
func jsonError(err error) error {
	var te *gojson.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("got %s, want %s", te.Value, describeType(te.Type))
	}
	if ok, off := sigsjson.SyntaxErrorOffset(err); ok {
		return fmt.Errorf("invalid JSON at byte %d: %s", off, strings.TrimPrefix(err.Error(), "json: "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

// describeType names a Go type the way a manifest's author thinks of it.
func describeType(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("an integer (%s)", t.Kind())
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Pointer:
		return describeType(t.Elem())
	}
	return t.String()
}

// jsonKind names the kind of a JSON value from its first byte.
func jsonKind(js []byte) string {
	js = bytes.TrimSpace(js)
	if len(js) == 0 {
		return "empty"
	}
	switch js[0] {
	case '{':
		return "a mapping"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// convertStatefulSet converts an apps/v1beta1 or apps/v1beta2 StatefulSet
// to apps/v1. Their specs have the same fields and JSON names.
func convertStatefulSet(beta any, src Source, tm typeMeta) (*appsv1.StatefulSet, error) {
	js, err := gojson.Marshal(beta)
	if err != nil {
		return nil, &DecodeError{Source: src, Kind: tm.kind, Name: tm.name, Err: fmt.Errorf("convert %s to apps/v1: %w", tm.apiVersion, err)}
	}
	set := &appsv1.StatefulSet{}
	if err := decodeStrict(js, set, src, tm); err != nil {
		return nil, err
	}
	return set, nil
}
