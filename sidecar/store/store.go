// Package store keeps downloaded model files in one local directory so a
// model can be named instead of located: `--model` takes either a file path
// or a store name such as "ggml-org/models:tinyllamas/stories260K.gguf" (the
// same REPO:FILE form `fastgen pull` accepts), or any unambiguous part of it.
//
// Layout under Dir():
//
//	{owner}--{name}/{file path in repo}      complete, verified files only
//	.partial/{owner}--{name}/{file}.{key}.part  resumable downloads
//
// Joining owner and name with "--" keeps the first directory level equal to
// one repo, so a name can be read back from any path without guessing where
// the repo ends and the file path begins; the hub forbids "--" in repo ids,
// so the mapping is reversible.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fastgen/fastgen/sidecar/hub"
)

// EnvDir overrides the store location.
const EnvDir = "FASTGEN_MODELS"

// partialDir holds in-progress downloads; List never reports it, so a
// half-fetched file can never be mistaken for a model.
const partialDir = ".partial"

// ErrNotFound is returned when a name matches nothing in the store.
var ErrNotFound = errors.New("model not found")

// ErrAmbiguous is returned when a name matches several stored models.
var ErrAmbiguous = errors.New("ambiguous model name")

// Dir is the store directory: $FASTGEN_MODELS, else the user cache dir's
// fastgen/models.
func Dir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the model store: %w; set %s", err, EnvDir)
	}
	return filepath.Join(c, "fastgen", "models"), nil
}

// Store is a model store rooted at Root.
type Store struct {
	Root string
}

// Open returns the store at Dir(). The directory is created lazily by the
// first download, so reading an empty store needs no write access.
func Open() (*Store, error) {
	d, err := Dir()
	if err != nil {
		return nil, err
	}
	return &Store{Root: d}, nil
}

// Entry is one stored model file.
type Entry struct {
	// Name is "repo:file", the form pull accepts.
	Name string `json:"name"`
	Repo string `json:"repo"`
	File string `json:"file"`
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// Name joins a repo and a file path into a store name.
func Name(repo, file string) string { return repo + ":" + file }

func repoDir(repo string) string { return strings.ReplaceAll(repo, "/", "--") }

func dirRepo(dir string) string { return strings.Replace(dir, "--", "/", 1) }

// checkName refuses names that could escape the store directory, since
// file paths come from a remote listing.
func checkName(repo, file string) error {
	if err := hub.ValidRepo(repo); err != nil {
		return err
	}
	if file == "" || path.IsAbs(file) || strings.Contains(file, `\`) {
		return fmt.Errorf("bad file path %q in %s", file, repo)
	}
	for _, seg := range strings.Split(file, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("bad file path %q in %s", file, repo)
		}
	}
	return nil
}

// Path is where a complete repo file lives in the store.
func (s *Store) Path(repo, file string) (string, error) {
	if err := checkName(repo, file); err != nil {
		return "", err
	}
	return filepath.Join(s.Root, repoDir(repo), filepath.FromSlash(file)), nil
}

// PartialPath is where a download of repo's file resumes from. key tells
// different contents of the same file apart (the expected SHA-256 when known,
// else the revision), so a resumed download never appends one version's
// bytes to another's.
func (s *Store) PartialPath(repo, file, key string) (string, error) {
	if err := checkName(repo, file); err != nil {
		return "", err
	}
	if key == "" {
		key = hub.DefaultRevision
	}
	key = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, key)
	if len(key) > 64 {
		key = key[:64]
	}
	return filepath.Join(s.Root, partialDir, repoDir(repo), filepath.FromSlash(file)+"."+key+".part"), nil
}

// List returns every stored model, sorted by name. A missing store is empty.
func (s *Store) List() ([]Entry, error) {
	var out []Entry
	err := filepath.WalkDir(s.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == s.Root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if p == s.Root {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.Root, p)
		if err != nil {
			return err
		}
		top, file, ok := strings.Cut(filepath.ToSlash(rel), "/")
		if !ok {
			return nil // a stray file at the top level belongs to no repo
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		repo := dirRepo(top)
		out = append(out, Entry{Name: Name(repo, file), Repo: repo, File: file, Path: p, Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing model store %s: %w", s.Root, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Resolve turns a --model argument into a path. An existing path wins, so a
// local file (or a checkpoint directory) always means what it says; an
// argument written as a path that does not exist is reported as such rather
// than matched loosely against the store; anything else is looked up by Find.
func (s *Store) Resolve(nameOrPath string) (string, error) {
	if p, ok, err := localPath(nameOrPath); ok || err != nil {
		return p, err
	}
	e, err := s.Find(nameOrPath)
	if err != nil {
		return "", err
	}
	return e.Path, nil
}

// Find looks a name up in the store, trying in order: the exact name;
// REPO:SPEC with SPEC chosen the way pull chooses a file (path, file name
// or quantization tag); a unique match of the end of the name (a file name,
// with or without its .gguf extension); a unique match of the start (a repo
// holding one file). Each step only runs when the previous matched nothing.
func (s *Store) Find(name string) (Entry, error) {
	entries, err := s.List()
	if err != nil {
		return Entry{}, err
	}
	if name == "" {
		return Entry{}, fmt.Errorf("%w: empty name", ErrNotFound)
	}
	var hits []Entry
	for _, e := range entries {
		if strings.EqualFold(e.Name, name) {
			hits = append(hits, e)
		}
	}
	if len(hits) == 0 {
		if ref, err := hub.ParseRef(name); err == nil && ref.Spec != "" {
			var files []hub.RepoFile
			byPath := map[string]Entry{}
			for _, e := range entries {
				if strings.EqualFold(e.Repo, ref.Repo) {
					files = append(files, hub.RepoFile{Path: e.File, Size: e.Size})
					byPath[e.File] = e
				}
			}
			if len(files) > 0 {
				f, err := hub.SelectFile(ref.Repo, files, ref.Spec)
				if errors.Is(err, hub.ErrAmbiguous) {
					return Entry{}, fmt.Errorf("%w: %v", ErrAmbiguous, err)
				}
				if err == nil {
					hits = append(hits, byPath[f.Path])
				}
			}
		}
	}
	if len(hits) == 0 {
		lower := strings.ToLower(name)
		for _, e := range entries {
			n := strings.ToLower(e.Name)
			stem := strings.TrimSuffix(n, path.Ext(n))
			for _, cand := range []string{n, stem} {
				if strings.HasSuffix(cand, lower) && boundaryBefore(cand, len(cand)-len(lower)) {
					hits = append(hits, e)
					break
				}
			}
		}
	}
	if len(hits) == 0 {
		lower := strings.ToLower(strings.TrimSuffix(name, ":"))
		for _, e := range entries {
			n := strings.ToLower(e.Name)
			if strings.HasPrefix(n, lower) && (len(n) == len(lower) || strings.ContainsRune(":/", rune(n[len(lower)]))) {
				hits = append(hits, e)
			}
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return Entry{}, fmt.Errorf("%w: %q is neither a file nor a model in the store (%s); run 'fastgen models' to list the store or 'fastgen pull REPO[:FILE]' to fetch one",
			ErrNotFound, name, s.Root)
	}
	names := make([]string, len(hits))
	for i, e := range hits {
		names[i] = e.Name
	}
	return Entry{}, fmt.Errorf("%w: %q matches %s; use the full name", ErrAmbiguous, name, strings.Join(names, ", "))
}

// boundaryBefore reports whether a match starting at i begins a name part,
// so "260K.gguf" does not select "stories260K.gguf".
func boundaryBefore(s string, i int) bool {
	return i == 0 || strings.ContainsRune(":/", rune(s[i-1]))
}

// Remove deletes a stored model (found as by Find) and any partial downloads
// of the same file, then prunes directories the removal left empty. It
// returns the removed entry.
func (s *Store) Remove(name string) (Entry, error) {
	e, err := s.Find(name)
	if err != nil {
		return Entry{}, err
	}
	if err := os.Remove(e.Path); err != nil {
		return Entry{}, fmt.Errorf("removing %s: %w", e.Name, err)
	}
	s.prune(filepath.Dir(e.Path))
	if p, err := s.PartialPath(e.Repo, e.File, "x"); err == nil {
		stale, _ := filepath.Glob(globEscape(strings.TrimSuffix(p, ".x.part")) + ".*.part")
		for _, f := range stale {
			os.Remove(f)
		}
		s.prune(filepath.Dir(p))
	}
	return e, nil
}

// prune removes empty directories from dir up to, not including, the root.
func (s *Store) prune(dir string) {
	root := filepath.Clean(s.Root)
	for d := filepath.Clean(dir); d != root && strings.HasPrefix(d, root+string(filepath.Separator)); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			return // not empty, or not ours to remove
		}
	}
}

func globEscape(p string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	if filepath.Separator == '\\' {
		return p // Windows paths use '\' as separator, and Glob does not escape there
	}
	return r.Replace(p)
}

// Package-level helpers operate on the store at Dir(), which is what the
// CLI and --model resolution use.

// List lists the store at Dir().
func List() ([]Entry, error) {
	s, err := Open()
	if err != nil {
		return nil, err
	}
	return s.List()
}

// localPath settles arguments that are paths without consulting the store,
// so --model with a local file works even where no store can be located.
func localPath(arg string) (string, bool, error) {
	if _, err := os.Stat(arg); err == nil {
		return arg, true, nil
	}
	sep := string(filepath.Separator)
	if filepath.IsAbs(arg) || strings.HasPrefix(arg, "."+sep) || strings.HasPrefix(arg, ".."+sep) || strings.HasPrefix(arg, "~") {
		return "", false, fmt.Errorf("%w: no such file %s", ErrNotFound, arg)
	}
	return "", false, nil
}

// Resolve resolves a --model argument against the store at Dir().
func Resolve(nameOrPath string) (string, error) {
	if p, ok, err := localPath(nameOrPath); ok || err != nil {
		return p, err
	}
	s, err := Open()
	if err != nil {
		return "", err
	}
	return s.Resolve(nameOrPath)
}

// Remove removes a model from the store at Dir().
func Remove(name string) (Entry, error) {
	s, err := Open()
	if err != nil {
		return Entry{}, err
	}
	return s.Remove(name)
}
