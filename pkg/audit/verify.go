package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ip2a/ip2a-ops/pkg/storage"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Config
}

// VerifiedMonth is one month's verdict.
type VerifiedMonth struct {
	Month   Month  `json:"month"`
	State   string `json:"state"`
	Rows    int64  `json:"rows"`
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Months []VerifiedMonth `json:"months"`
	OK     int             `json:"ok"`
	Failed int             `json:"failed"`
	// Unrecorded lists manifests in storage that the ops table does not
	// know (left by a run killed between upload and record; harmless, the
	// next run overwrites them).
	Unrecorded []string `json:"unrecorded,omitempty"`
}

// Verify reads every archive back (manifest hash, compressed and raw
// hashes, row count and id sum) and checks the chain: each manifest must
// name the SHA-256 of the previous month's manifest, or of the manifest kept
// in a purged month's deletion record. Any failure: error wrapping
// ErrMismatch.
func Verify(ctx context.Context, o VerifyOptions) (VerifyResult, error) {
	if err := o.Config.validate(true); err != nil {
		return VerifyResult{}, err
	}
	c := o.Config.withDefaults()
	recs, err := records(ctx, c)
	if err != nil {
		return VerifyResult{}, err
	}
	res := VerifyResult{Months: []VerifiedMonth{}}
	known := map[string]bool{}
	prev := ""
	for _, rec := range recs {
		known[rec.ManifestKey] = true
		vm := VerifiedMonth{Month: rec.Month, State: rec.State, Rows: rec.RowCount}
		var problem error
		if rec.PreviousManifestSHA256 != prev {
			problem = fmt.Errorf("%w: %s: chain broken: previous manifest SHA-256 is recorded as %q, the previous archive's is %q", ErrMismatch, rec.Month, rec.PreviousManifestSHA256, prev)
		}
		if problem == nil {
			if rec.State == StatePurged {
				problem = checkPurgeRecord(ctx, c, rec)
			} else {
				var m Manifest
				m, problem = checkStored(ctx, c.Store, rec)
				if problem == nil && m.PreviousManifestSHA256 != rec.PreviousManifestSHA256 {
					problem = fmt.Errorf("%w: %s: chain broken: manifest names previous %q, recorded %q", ErrMismatch, rec.Month, m.PreviousManifestSHA256, rec.PreviousManifestSHA256)
				}
			}
		}
		prev = rec.ManifestSHA256
		if problem != nil {
			if !errors.Is(problem, ErrMismatch) {
				return res, problem
			}
			vm.Problem = problem.Error()
			res.Failed++
		} else {
			vm.OK = true
			res.OK++
		}
		res.Months = append(res.Months, vm)
	}
	objs, err := c.Store.List(ctx, c.Prefix+"/"+Table+"/")
	if err != nil {
		return res, fmt.Errorf("list archives: %w", err)
	}
	for _, ob := range objs {
		if strings.HasSuffix(ob.Key, ".manifest.json") && !known[ob.Key] {
			res.Unrecorded = append(res.Unrecorded, ob.Key)
		}
	}
	if res.Failed > 0 {
		return res, fmt.Errorf("verify audit archives: %d of %d months failed: %w", res.Failed, len(res.Months), ErrMismatch)
	}
	return res, nil
}

// PurgeRecord is the deletion record stored for a purged month: it keeps
// the manifest, so the chain can still be checked. Manifest is the
// manifest file's exact text, a JSON string: the chain links the SHA-256 of
// those bytes, which an embedded JSON value would not keep (encoding/json
// re-indents it).
type PurgeRecord struct {
	Month          Month  `json:"month"`
	Reason         string `json:"reason"`
	PurgedAt       string `json:"purged_at"`
	RowCount       int64  `json:"row_count"`
	DataKey        string `json:"data_key"`
	ManifestKey    string `json:"manifest_key"`
	ManifestSHA256 string `json:"manifest_sha256"`
	Manifest       string `json:"manifest"`
}

func readPurgeRecord(ctx context.Context, s storage.Store, key string) (PurgeRecord, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return PurgeRecord{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 8<<20))
	if err != nil {
		return PurgeRecord{}, err
	}
	var pr PurgeRecord
	if err := json.Unmarshal(b, &pr); err != nil {
		return PurgeRecord{}, fmt.Errorf("%w: deletion record %s: %v", ErrMismatch, key, err)
	}
	return pr, nil
}

func checkPurgeRecord(ctx context.Context, c Config, rec Record) error {
	pr, err := readPurgeRecord(ctx, c.Store, rec.PurgeRecordKey)
	if errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("%w: %s: deletion record %s is missing", ErrMismatch, rec.Month, rec.PurgeRecordKey)
	}
	if err != nil {
		return err
	}
	if pr.ManifestSHA256 != rec.ManifestSHA256 || sha256Hex([]byte(pr.Manifest)) != rec.ManifestSHA256 {
		return fmt.Errorf("%w: %s: deletion record's manifest does not match the recorded SHA-256", ErrMismatch, rec.Month)
	}
	return nil
}
