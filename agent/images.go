package agent

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// importImages loads every archive in the data directory's images/ into
// the image store, so that machines without a registry get their images
// by dropping archives there. A broken archive is logged and skipped.
func (a *Agent) importImages(ctx context.Context) {
	ents, err := os.ReadDir(a.paths.images())
	if err != nil {
		return
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(a.paths.images(), e.Name())
		f, err := os.Open(p)
		if err != nil {
			a.log.Warn("open image archive", "file", p, "error", err)
			continue
		}
		names, err := a.containers.ImportArchive(ctx, f)
		f.Close()
		if err != nil {
			a.log.Warn("import image archive", "file", p, "error", err)
			continue
		}
		a.log.Info("imported image archive", "file", p, "images", names)
	}
}
