package volumes

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

func TestParseClass(t *testing.T) {
	tests := []struct {
		spec    string
		want    Class
		wantErr string
	}{
		{spec: "fast=local", want: Class{Name: "fast", Driver: DriverLocal}},
		{spec: "fast=local:/srv/stead", want: Class{Name: "fast", Driver: DriverLocal, Root: "/srv/stead"}},
		{spec: "nfs=shared:/mnt/nfs/stead,default", want: Class{Name: "nfs", Driver: DriverShared, Root: "/mnt/nfs/stead", Default: true}},
		{spec: "disk=image:/mnt/nfs/images,shared", want: Class{Name: "disk", Driver: DriverImage, Root: "/mnt/nfs/images", Shared: true}},
		{spec: "disk=image:/var/img,default,shared", want: Class{Name: "disk", Driver: DriverImage, Root: "/var/img", Shared: true, Default: true}},
		{spec: "fast", wantErr: `storage class "fast": want name=driver[:root][,default][,shared]`},
		{spec: "=local", wantErr: `storage class "=local": want name=driver`},
		{spec: "Fast=local", wantErr: `storage class "Fast": name: a lowercase RFC 1123 subdomain`},
		{spec: "fast=lokal", wantErr: `storage class "fast": driver: "lokal" is not a driver (want local, shared or image)`},
		{spec: "nfs=shared", wantErr: `storage class "nfs": root: required for the shared driver`},
		{spec: "disk=image", wantErr: `storage class "disk": root: required for the image driver`},
		{spec: "nfs=shared:mnt/nfs", wantErr: `storage class "nfs": root: "mnt/nfs" is not an absolute path`},
		{spec: "nfs=shared:/mnt/../etc", wantErr: `storage class "nfs": root: "/mnt/../etc" is not clean (want "/etc")`},
		{spec: "nfs=shared:/", wantErr: `storage class "nfs": root: the filesystem root cannot hold volumes`},
		{spec: "fast=local,shared", wantErr: `storage class "fast": shared: a local class cannot be shared`},
		{spec: "fast=local,fast", wantErr: `storage class "fast": option "fast" unknown (want default or shared)`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseClass(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("ParseClass(%q) error = %v, want prefix %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseClass(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestNewClasses(t *testing.T) {
	tests := []struct {
		name    string
		specs   []string
		wantErr string
	}{
		{name: "two defaults", specs: []string{"a=local,default", "b=local,default"}, wantErr: `storage class "b": default: class "a" is already the default`},
		{name: "duplicate", specs: []string{"a=local", "a=shared:/x"}, wantErr: `storage class "a": name: defined twice`},
		{name: "fine", specs: []string{"b=shared:/mnt/b", "a=local,default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseClasses(tt.specs)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("ParseClasses(%q) error = %v, want %q", tt.specs, err, tt.wantErr)
			}
		})
	}
}

func TestClassesLookup(t *testing.T) {
	cs, err := ParseClasses([]string{"nfs=shared:/mnt/nfs", "fast=local,default", "disk=image:/var/img"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		wantName string
		wantErr  string
	}{
		{name: "", wantName: "fast"},
		{name: "nfs", wantName: "nfs"},
		{name: "disk", wantName: "disk"},
		{name: "slow", wantErr: `unknown storage class "slow" (known: disk, fast, nfs)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := cs.Lookup(tt.name)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrUnknownClass) {
					t.Fatalf("Lookup(%q) error = %v, want %q", tt.name, err, tt.wantErr)
				}
				return
			}
			if err != nil || c.Name != tt.wantName {
				t.Fatalf("Lookup(%q) = %q, %v, want %q", tt.name, c.Name, err, tt.wantName)
			}
		})
	}
	if got := names(cs.List()); !reflect.DeepEqual(got, []string{"disk", "fast", "nfs"}) {
		t.Errorf("List() = %v, want sorted by name", got)
	}
	// The shared driver is always shared, even when the option is left out.
	if c, _ := cs.Lookup("nfs"); !c.Shared {
		t.Errorf("shared class %+v has Shared unset", c)
	}

	noDefault, _ := ParseClasses([]string{"nfs=shared:/mnt/nfs"})
	_, err = noDefault.Lookup("")
	want := `unknown storage class: the claim names no storage class and none is the default (known: nfs)`
	if err == nil || err.Error() != want {
		t.Errorf("Lookup(\"\") with no default: %v, want %q", err, want)
	}
}

func names(cs []Class) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestClassPinned(t *testing.T) {
	tests := []struct {
		class Class
		want  bool
	}{
		{Class{Name: "a", Driver: DriverLocal}, true},
		{Class{Name: "b", Driver: DriverShared, Root: "/x"}, false},
		{Class{Name: "c", Driver: DriverImage, Root: "/x"}, true},
		{Class{Name: "d", Driver: DriverImage, Root: "/x", Shared: true}, false},
	}
	for _, tt := range tests {
		if got := tt.class.Pinned(); got != tt.want {
			t.Errorf("%s (%s, shared %v).Pinned() = %v, want %v", tt.class.Name, tt.class.Driver, tt.class.Shared, got, tt.want)
		}
	}
}

// TestClassesYAML: the configuration file form decodes into []Class.
func TestClassesYAML(t *testing.T) {
	doc := `
- name: fast
  driver: local
  default: true
- name: disk
  driver: image
  root: /mnt/nfs/images
  shared: true
`
	var list []Class
	if err := yaml.UnmarshalStrict([]byte(doc), &list); err != nil {
		t.Fatal(err)
	}
	cs, err := NewClasses(list)
	if err != nil {
		t.Fatal(err)
	}
	want := []Class{
		{Name: "disk", Driver: DriverImage, Root: "/mnt/nfs/images", Shared: true},
		{Name: "fast", Driver: DriverLocal, Default: true},
	}
	if got := cs.List(); !reflect.DeepEqual(got, want) {
		t.Errorf("classes = %+v, want %+v", got, want)
	}
}

func TestFromClaim(t *testing.T) {
	cs, err := ParseClasses([]string{"fast=local,default", "disk=image:/var/img"})
	if err != nil {
		t.Fatal(err)
	}
	claim := func(class *string, size string, uid string) *corev1.PersistentVolumeClaim {
		pvc := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "www-web-0", UID: types.UID(uid)},
			Spec:       corev1.PersistentVolumeClaimSpec{StorageClassName: class},
		}
		if size != "" {
			pvc.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}
		}
		return pvc
	}
	str := func(s string) *string { return &s }
	const uid = "3f1c2a4e-8d1b-4f6a-9c2e-1a2b3c4d5e6f"
	tests := []struct {
		name      string
		pvc       *corev1.PersistentVolumeClaim
		wantClass string
		wantSize  int64
		wantErr   string
	}{
		{name: "default class", pvc: claim(nil, "1Gi", uid), wantClass: "fast", wantSize: 1 << 30},
		{name: "empty class is the default", pvc: claim(str(""), "", uid), wantClass: "fast"},
		{name: "named class", pvc: claim(str("disk"), "64Mi", uid), wantClass: "disk", wantSize: 64 << 20},
		{name: "unknown class", pvc: claim(str("slow"), "1Gi", uid), wantErr: `volume default/www-web-0: unknown storage class "slow" (known: disk, fast)`},
		{name: "image without size", pvc: claim(str("disk"), "", uid), wantErr: `volume default/www-web-0: invalid volume: class "disk" keeps ext4 images: set resources.requests.storage`},
		{name: "uid escapes", pvc: claim(nil, "1Gi", "../../etc"), wantErr: `volume default/www-web-0: invalid volume: uid "../../etc" is not an opaque identifier`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := FromClaim(tt.pvc, cs)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("FromClaim error = %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Class.Name != tt.wantClass || v.Size != tt.wantSize || v.UID != uid || v.String() != "default/www-web-0" {
				t.Errorf("FromClaim = %+v, want class %s size %d", v, tt.wantClass, tt.wantSize)
			}
		})
	}
}

func TestValidUID(t *testing.T) {
	tests := []struct {
		uid string
		ok  bool
	}{
		{"3f1c2a4e-8d1b-4f6a-9c2e-1a2b3c4d5e6f", true},
		{"a.b_c-d", true},
		{"", false},
		{".", false},
		{"..", false},
		{".hidden", false},
		{"a/b", false},
		{"../x", false},
		{"a\x00b", false},
		{"a b", false},
		{strings.Repeat("a", 129), false},
		{strings.Repeat("a", 128), true},
	}
	for _, tt := range tests {
		if err := validUID(tt.uid); (err == nil) != tt.ok {
			t.Errorf("validUID(%q) = %v, want ok=%v", tt.uid, err, tt.ok)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		512:              "512 B",
		4 << 20:          "4 MiB",
		1 << 30:          "1 GiB",
		3900 * 1024:      "3.8 MiB",
		1<<30 + 512<<20:  "1.5 GiB",
		5 << 40:          "5 TiB",
		4<<20 - 64<<10:   "3.9 MiB",
		1023:             "1023 B",
		1024:             "1 KiB",
		1<<20 - 1:        "1024 KiB",
		int64(1<<20 + 1): "1 MiB",
	} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
