package reports

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// Delivery is one place a report's files went besides being written: the
// storage they were uploaded to, or the people emailed. It is part of the
// run's result, so the ledger records every delivery.
type Delivery struct {
	// Channel is "storage" or "email".
	Channel string `json:"channel"`
	// Target is the store (without secrets) or the recipients.
	Target string `json:"target"`
	// Files are the file names delivered.
	Files []string `json:"files"`
	// Links is true when an email carried links (to download until
	// Expires) instead of attachments, because the files were too big.
	Links   bool       `json:"links,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
}

// upload puts each file written under dir into store, keyed by its file
// name, and returns the files with Path naming the object and Key set.
func upload(ctx context.Context, store storage.Store, files []File) ([]File, error) {
	out := make([]File, len(files))
	for i, f := range files {
		key := filepath.Base(f.Path)
		r, err := os.Open(f.Path)
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", key, err)
		}
		_, err = store.Put(ctx, key, r, storage.PutOptions{Size: f.Bytes, ContentType: ContentType(key)})
		_ = r.Close()
		if err != nil {
			return nil, fmt.Errorf("upload %s to %s: %w", key, store, err)
		}
		f.Key, f.Path = key, strings.TrimSuffix(store.String(), "/")+"/"+key
		out[i] = f
	}
	return out, nil
}

// ContentType is the media type of a report file, by its extension.
func ContentType(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".pdf":
		return "application/pdf"
	case ".xlsx":
		return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	}
	return "application/octet-stream"
}
