// Package ui is cairn's web status page: plain HTML, CSS and JavaScript,
// embedded in the binary (nothing is fetched from the internet), which
// every member serves at /ui/ (httpapi). The page reads the cluster's
// status (GET /v1/cluster/status) and the serving member's request
// statistics (GET /v1/stats) with the caller's credentials, and signs in
// with POST /v1/auth/authenticate when access control is on (docs/ui.md).
//
// The assets are served with headers that keep the page to its own files
// (SetHeaders): a Content-Security-Policy allowing nothing but this
// origin's scripts, styles and API, no inline script or style.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// ErrNotFound means no asset has the name asked for.
var ErrNotFound = errors.New("ui: no such file")

// Index is the page's name; the empty name is the index.
const Index = "index.html"

//go:embed assets
var files embed.FS

// Asset is one embedded file.
type Asset struct {
	// Name is the file's name under /ui/.
	Name        string
	ContentType string
	// ETag is a strong entity tag of Content.
	ETag    string
	Content []byte
}

// contentTypes are the types of the assets by extension (an asset of
// another extension is a build error: see assets).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// assets are the embedded files by name, read once.
var assets = func() map[string]Asset {
	m := map[string]Asset{}
	err := fs.WalkDir(files, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("ui: asset %s has no known content type", p)
		}
		sum := sha256.Sum256(b)
		name := strings.TrimPrefix(p, "assets/")
		m[name] = Asset{Name: name, ContentType: ct, ETag: `"` + hex.EncodeToString(sum[:16]) + `"`, Content: b}
		return nil
	})
	if err != nil {
		panic(err) // the embedded files are part of the build
	}
	return m
}()

// Open returns the asset called name ("" is Index), or ErrNotFound.
func Open(name string) (Asset, error) {
	if name == "" {
		name = Index
	}
	a, ok := assets[name]
	if !ok {
		return Asset{}, fmt.Errorf("%w: /ui/%s", ErrNotFound, name)
	}
	return a, nil
}

// ContentSecurityPolicy is the page's policy: scripts, styles, images and
// API calls from this origin only (no inline script or style, no eval),
// no plugins, no framing, and forms that go nowhere (the sign-in form is
// sent by the script).
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// SetHeaders sets the security headers of an asset's answer.
func SetHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// Revalidated every time (ETag): a member upgraded in place serves
	// its own page at once.
	h.Set("Cache-Control", "no-cache")
}
