package ui

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEmbedded: the page and the files it names are in the binary (the
// test runs where none is on disk), each with a content type and an
// ETag; other names are ErrNotFound.
func TestEmbedded(t *testing.T) {
	t.Chdir(t.TempDir())
	index, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	if index.Name != Index || index.ContentType != "text/html; charset=utf-8" || !strings.HasPrefix(string(index.Content), "<!doctype html>") {
		t.Fatalf("index: %s %s %.40q", index.Name, index.ContentType, index.Content)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(index.Content), -1)
	var named []string
	for _, m := range refs {
		if strings.HasPrefix(m[1], "#") {
			continue
		}
		name, ok := strings.CutPrefix(m[1], "/ui/")
		if !ok {
			t.Fatalf("index.html refers to %q, outside the page's files", m[1])
		}
		a, err := Open(name)
		if err != nil || len(a.Content) == 0 || a.ETag == "" {
			t.Fatalf("%s: %v", m[1], err)
		}
		named = append(named, name)
	}
	slices.Sort(named)
	if want := []string{"app.js", "style.css"}; !slices.Equal(named, want) {
		t.Fatalf("index.html names %v, want %v", named, want)
	}
	for _, name := range []string{"nope", "assets/app.js", "../ui.go", "ui.go"} {
		if _, err := Open(name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open(%q): %v", name, err)
		}
	}
}

// TestPageRules: the page keeps to its policy and to the basics of
// accessibility: no inline script, style or event handler; nothing
// loaded from elsewhere; nothing parsed as markup from the API; a main
// region, headings, a status region, a members table with a caption and
// column headers.
func TestPageRules(t *testing.T) {
	html := string(mustOpen(t, "index.html").Content)
	js := string(mustOpen(t, "app.js").Content)
	css := string(mustOpen(t, "style.css").Content)
	for _, c := range []struct {
		what, in string
		re       string
	}{
		{"an inline script", html, `<script[^>]*>\s*[^<\s]`},
		{"a style attribute", html, `\sstyle=`},
		{"a style element", html, `<style`},
		{"an event handler attribute", html, `\son[a-z]+=`},
		{"a URL of another origin", html + css, `(?i)(?:https?:)?//[a-z0-9]`},
		{"markup parsed from strings", js, `innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`},
		// The SVG namespace is a name, not a URL the page loads.
		{"a URL of another origin", strings.ReplaceAll(js, "'http://www.w3.org/2000/svg'", ""), `(?i)(?:https?:)?//[a-z0-9]`},
	} {
		if m := regexp.MustCompile(c.re).FindString(c.in); m != "" {
			t.Errorf("the page has %s: %q", c.what, m)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(tag, ` src="/ui/`) {
			t.Errorf("the page has a script without a file of its own: %s", tag)
		}
	}
	for _, want := range []string{
		`<html lang="en">`, `<main`, `<h1>`, `<h2`, `role="status"`, `aria-live="polite"`,
		`<caption>`, `<th scope="col">Member</th>`, `<label for="user">`, `<label for="password">`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
	if !strings.Contains(js, `th.scope = 'row'`) || !strings.Contains(css, ":focus-visible") {
		t.Error("member rows need a row header, and focus must stay visible")
	}
}

func mustOpen(t *testing.T, name string) Asset {
	t.Helper()
	a, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
