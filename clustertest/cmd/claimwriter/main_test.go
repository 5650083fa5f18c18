package main

import (
	"strings"
	"testing"
)

const sampleMountinfo = `1279 1100 0:150 / / rw,relatime - overlay overlay rw,lowerdir=/x
1290 1279 0:41 / /shared rw,relatime - tmpfs tmpfs rw,size=65536k
1291 1279 0:41 /3f2a-uid/data /data rw,relatime - tmpfs tmpfs rw,size=65536k
1292 1279 0:41 /with\040space/data /spaced rw,relatime - tmpfs tmpfs rw
`

func TestMountRoot(t *testing.T) {
	tests := []struct {
		point, want, err string
	}{
		{"/data", "/3f2a-uid/data", ""},
		{"/shared", "/", ""},
		{"/spaced", "/with space/data", ""},
		{"/missing", "", "nothing is mounted at /missing"},
	}
	for _, tt := range tests {
		got, err := mountRoot(strings.NewReader(sampleMountinfo), tt.point)
		if got != tt.want || errString(err) != tt.err {
			t.Errorf("mountRoot(%s) = %q, %v; want %q, %q", tt.point, got, err, tt.want, tt.err)
		}
	}
}

func TestControlDir(t *testing.T) {
	tests := []struct {
		root, want, err string
	}{
		{"/3f2a-uid/data", "/shared/3f2a-uid/control", ""},
		{"/3f2a-uid/data/", "/shared/3f2a-uid/control", ""},
		{"/", "", "the data mount's root / is not /<uid>/data on the shared filesystem"},
		{"/x/3f2a-uid/data", "", "the data mount's root /x/3f2a-uid/data is not /<uid>/data on the shared filesystem"},
		{"/3f2a-uid/other", "", "the data mount's root /3f2a-uid/other is not /<uid>/data on the shared filesystem"},
	}
	for _, tt := range tests {
		got, err := controlDir("/shared", tt.root)
		if got != tt.want || errString(err) != tt.err {
			t.Errorf("controlDir(%s) = %q, %v; want %q, %q", tt.root, got, err, tt.want, tt.err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
