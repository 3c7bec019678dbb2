package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrIncomplete marks a download that broke off; the partial file is kept
// and the next Download with the same PartPath resumes it.
var ErrIncomplete = errors.New("download incomplete")

// Request names one file to fetch and the two local paths it may touch.
type Request struct {
	Repo     string
	Revision string
	// File comes from Resolve; Size -1 and SHA256 "" mean unknown.
	File RepoFile
	// PartPath holds the resumable partial download. It must be on the same
	// file system as Dest so the final move is an atomic rename.
	PartPath string
	// Dest receives the file only once it is complete and verified.
	Dest string
	// Progress is told about bytes as they arrive; nil is quiet.
	Progress Progress
}

// Result describes a finished download.
type Result struct {
	Path string
	Size int64
	// SHA256 is the verified digest, or "" when the hub published none
	// (non-LFS files), in which case only the size was checked.
	SHA256 string
	// Resumed counts bytes reused from an earlier partial download.
	Resumed int64
	// Existing is true when Dest already held the verified file.
	Existing bool
}

// Download fetches req.File into req.Dest by way of req.PartPath, resuming
// whatever the partial file already holds with an HTTP Range request. The
// digest comes from the hub's X-Linked-Etag (sent on the resolve redirect),
// else from the listing. On a checksum mismatch the partial file is removed,
// because resuming it could only reproduce the same bad bytes. On
// cancellation or a broken connection it is kept for the next attempt.
func (c *Client) Download(ctx context.Context, req Request) (Result, error) {
	name := req.Repo + ":" + req.File.Path
	prog := req.Progress
	if prog == nil {
		prog = quiet{}
	}
	if req.File.SHA256 != "" {
		if ok, size := fileHasDigest(req.Dest, req.File.Size, req.File.SHA256); ok {
			return Result{Path: req.Dest, Size: size, SHA256: req.File.SHA256, Existing: true}, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(req.PartPath), 0o755); err != nil {
		return Result{}, fmt.Errorf("preparing download of %s: %w", name, err)
	}
	f, err := os.OpenFile(req.PartPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return Result{}, fmt.Errorf("preparing download of %s: %w", name, err)
	}
	d := &download{c: c, req: req, name: name, f: f, h: sha256.New(), prog: prog, size: req.File.Size, sha: req.File.SHA256}
	res, err := d.run(ctx)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing %s: %w", req.PartPath, cerr)
	}
	if err != nil {
		prog.Finish(d.offset, err)
		if errors.Is(err, ErrChecksum) {
			os.Remove(req.PartPath)
		}
		return Result{}, err
	}
	if err := os.MkdirAll(filepath.Dir(req.Dest), 0o755); err != nil {
		return Result{}, fmt.Errorf("storing %s: %w", name, err)
	}
	if err := os.Rename(req.PartPath, req.Dest); err != nil {
		return Result{}, fmt.Errorf("storing %s: %w", name, err)
	}
	prog.Finish(d.offset, nil)
	res.Path = req.Dest
	return res, nil
}

// download is the state of one Download call across resume attempts. The
// invariant between attempts: f holds exactly offset bytes and h has hashed
// exactly those bytes.
type download struct {
	c      *Client
	req    Request
	name   string
	f      *os.File
	h      hash.Hash
	prog   Progress
	offset int64
	size   int64  // expected total, -1 when unknown
	sha    string // expected digest, "" when unknown
	resume int64  // bytes the partial file held at the start
}

// errRestart asks run to start over from byte zero in the same attempt
// budget: the server could not continue the partial file.
var errRestart = errors.New("restart from zero")

func (d *download) run(ctx context.Context) (Result, error) {
	st, err := d.f.Stat()
	if err != nil {
		return Result{}, err
	}
	d.offset = st.Size()
	if d.size >= 0 && d.offset > d.size {
		if err := d.truncate(); err != nil {
			return Result{}, err
		}
	}
	if d.offset > 0 {
		// The digest covers the whole file, so the kept prefix is hashed
		// once before new bytes are appended.
		if _, err := io.Copy(d.h, io.NewSectionReader(d.f, 0, d.offset)); err != nil {
			return Result{}, fmt.Errorf("reading partial download %s: %w", d.req.PartPath, err)
		}
	}
	d.resume = d.offset
	// A partial file that is already whole (the process stopped between the
	// last byte and the rename) needs no request when the digest is known.
	if !(d.size > 0 && d.offset == d.size && d.sha != "") {
		for attempt := 0; ; attempt++ {
			err := d.fetch(ctx)
			if err == nil {
				break
			}
			if errors.Is(err, errRestart) {
				if attempt < 2 {
					continue
				}
				return Result{}, fmt.Errorf("downloading %s: the server kept answering resume requests with the wrong byte range", d.name)
			}
			if !errors.Is(err, ErrIncomplete) || ctx.Err() != nil || attempt >= d.c.Retries {
				return Result{}, d.stopped(ctx, err)
			}
			select {
			case <-ctx.Done():
				return Result{}, d.stopped(ctx, err)
			case <-time.After(time.Duration(attempt+1) * 250 * time.Millisecond):
			}
		}
	}
	if d.size >= 0 && d.offset != d.size {
		return Result{}, fmt.Errorf("%w: %s: received %d bytes, expected %d; the partial file %s is kept, pull again to resume",
			ErrIncomplete, d.name, d.offset, d.size, d.req.PartPath)
	}
	got := hex.EncodeToString(d.h.Sum(nil))
	if d.sha != "" && got != d.sha {
		return Result{}, fmt.Errorf("%w for %s: the hub reports sha256 %s but the download hashes to %s; the partial file was removed, nothing was stored",
			ErrChecksum, d.name, d.sha, got)
	}
	if err := d.f.Sync(); err != nil {
		return Result{}, fmt.Errorf("writing %s: %w", d.req.PartPath, err)
	}
	res := Result{Size: d.offset, Resumed: d.resume}
	if d.sha != "" {
		res.SHA256 = got
	}
	return res, nil
}

// stopped explains where a failed download left things.
func (d *download) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("download of %s stopped: %w; %d bytes kept in %s, pull again to resume",
			d.name, ctx.Err(), d.offset, d.req.PartPath)
	}
	return err
}

func (d *download) truncate() error {
	if err := d.f.Truncate(0); err != nil {
		return fmt.Errorf("resetting partial download %s: %w", d.req.PartPath, err)
	}
	d.offset = 0
	d.h.Reset()
	d.resume = 0
	return nil
}

// fetch performs one GET from d.offset and appends the body.
func (d *download) fetch(ctx context.Context) error {
	u := d.c.FileURL(d.req.Repo, d.req.Revision, d.req.File.Path)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", d.name, err)
	}
	if d.offset > 0 {
		hreq.Header.Set("Range", "bytes="+strconv.FormatInt(d.offset, 10)+"-")
	}
	// Compression would make Content-Length and Range refer to encoded bytes.
	hreq.Header.Set("Accept-Encoding", "identity")
	var linked string
	linkedSize := int64(-1)
	note := func(h http.Header) {
		if s := normalizeSHA256(h.Get("X-Linked-Etag")); s != "" {
			linked = s
		}
		if n, err := strconv.ParseInt(h.Get("X-Linked-Size"), 10, 64); err == nil && n >= 0 {
			linkedSize = n
		}
	}
	resp, err := d.c.do(hreq, func(r *http.Response) { note(r.Header) })
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	note(resp.Header)
	if linked != "" {
		d.sha = linked
	}
	if linkedSize >= 0 {
		d.size = linkedSize
	}

	switch resp.StatusCode {
	case http.StatusOK:
		if d.offset > 0 {
			// The server ignored Range: the body starts at byte zero.
			if err := d.truncate(); err != nil {
				return err
			}
		}
		if resp.ContentLength >= 0 {
			d.size = resp.ContentLength
		}
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != d.offset {
			if err := d.truncate(); err != nil {
				return err
			}
			return errRestart
		}
		if total >= 0 {
			d.size = total
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total >= 0 {
			d.size = total
		}
		if d.size == d.offset {
			return nil // the partial file already holds everything
		}
		if err := d.truncate(); err != nil {
			return err
		}
		return errRestart
	default:
		return d.c.statusError(resp, fmt.Sprintf("%s (revision %s, %s)", d.name, revisionOr(d.req.Revision), u))
	}
	if d.size >= 0 && d.offset > d.size {
		if err := d.truncate(); err != nil {
			return err
		}
		return errRestart
	}

	if _, err := d.f.Seek(d.offset, io.SeekStart); err != nil {
		return fmt.Errorf("writing %s: %w", d.req.PartPath, err)
	}
	d.prog.Start(d.name, d.offset, d.size)
	buf := make([]byte, 1<<20)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := d.f.Write(buf[:n]); err != nil {
				// Whatever part of this write landed is beyond offset and
				// will be overwritten by the next attempt's Seek.
				return fmt.Errorf("writing %s: %w", d.req.PartPath, err)
			}
			d.h.Write(buf[:n])
			d.offset += int64(n)
			d.prog.Update(d.offset)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %s: connection lost after %d bytes: %v; the partial file %s is kept, pull again to resume",
				ErrIncomplete, d.name, d.offset, rerr, d.req.PartPath)
		}
	}
	if d.size >= 0 && d.offset < d.size {
		return fmt.Errorf("%w: %s: the server closed the transfer at %d of %d bytes; the partial file %s is kept, pull again to resume",
			ErrIncomplete, d.name, d.offset, d.size, d.req.PartPath)
	}
	return nil
}

func revisionOr(r string) string {
	if r == "" {
		return DefaultRevision
	}
	return r
}

// parseContentRange reads "bytes START-END/TOTAL" or "bytes */TOTAL"; total
// is -1 for "*".
func parseContentRange(v string) (start, total int64, ok bool) {
	v, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		n, err := strconv.ParseInt(tot, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total = n
	}
	if rng == "*" {
		return 0, total, true
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return start, total, true
}

// fileHasDigest reports whether path exists with the given size (when
// known) and SHA-256, so a repeated pull costs a hash instead of a download.
func fileHasDigest(path string, size int64, sha string) (bool, int64) {
	f, err := os.Open(path)
	if err != nil {
		return false, 0
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || size >= 0 && st.Size() != size {
		return false, 0
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, 0
	}
	return hex.EncodeToString(h.Sum(nil)) == sha, st.Size()
}
