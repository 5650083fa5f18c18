package api

import (
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateNoNUL refuses NUL characters in every string of obj, keys of maps
// included. A manifest cannot carry a raw NUL byte, but YAML ("\0") and
// JSON ("\u0000") escapes can put one in any value, and a NUL in a path,
// an image or an argument means something else to the kernel and to
// containerd than to the user who wrote it.
func validateNoNUL(obj any) field.ErrorList {
	var errs field.ErrorList
	walkStrings(reflect.ValueOf(obj), nil, func(path *field.Path, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			errs = append(errs, field.Invalid(path, s, "must not contain a NUL character"))
		}
	})
	return errs
}

// walkStrings calls fn with every string reachable from v and its field
// path in JSON names.
func walkStrings(v reflect.Value, path *field.Path, fn func(*field.Path, string)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkStrings(v.Elem(), path, fn)
		}
	case reflect.String:
		fn(path, v.String())
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // raw bytes, such as a certificate
		}
		for i := 0; i < v.Len(); i++ {
			walkStrings(v.Index(i), indexPath(path, i), fn)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			key := iter.Key()
			keyPath := path
			if key.Kind() == reflect.String {
				fn(path, key.String())
				keyPath = keyedPath(path, key.String())
			}
			walkStrings(iter.Value(), keyPath, fn)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-":
				continue
			case f.Anonymous && name == "":
				walkStrings(v.Field(i), path, fn) // inlined, as TypeMeta
				continue
			case name == "":
				name = f.Name
			}
			walkStrings(v.Field(i), childPath(path, name), fn)
		}
	}
}

func childPath(p *field.Path, name string) *field.Path {
	if p == nil {
		return field.NewPath(name)
	}
	return p.Child(name)
}

func indexPath(p *field.Path, i int) *field.Path {
	if p == nil {
		return field.NewPath("").Index(i)
	}
	return p.Index(i)
}

func keyedPath(p *field.Path, k string) *field.Path {
	if p == nil {
		return field.NewPath("").Key(k)
	}
	return p.Key(k)
}
