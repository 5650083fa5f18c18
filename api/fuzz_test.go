package api

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

// FuzzDecodeManifest checks that any input either decodes to objects that
// survive a round trip, or is refused with a typed error; never a panic.
// The limits run before decoding, so no input costs unbounded time or
// memory. The seed corpus in testdata/fuzz/FuzzDecodeManifest holds alias
// bombs, deep nesting, NUL bytes, huge names, negative and huge replicas,
// paths with "..", absolute paths and names that look like paths.
func FuzzDecodeManifest(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := DecodeManifests(data)
		if err != nil {
			var de *DecodeError
			var inv *InvalidError
			if !errors.Is(err, ErrInvalid) || !(errors.As(err, &de) || errors.As(err, &inv)) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			if objs != nil {
				t.Fatalf("objects returned with error %v", err)
			}
			return
		}
		for _, obj := range objs {
			out, err := yaml.Marshal(obj)
			if err != nil {
				t.Fatalf("encode %s: %v", obj.GetName(), err)
			}
			again, err := DecodeManifests(out)
			if err != nil {
				t.Fatalf("decode of an accepted object, re-encoded, failed: %v\n%s", err, out)
			}
			if len(again) != 1 {
				t.Fatalf("re-encoded object decoded to %d objects\n%s", len(again), out)
			}
			if !equality.Semantic.DeepEqual(obj, again[0]) {
				t.Fatalf("round trip changed the object (-before +after):\n%s", cmp.Diff(obj, again[0]))
			}
		}
	})
}
