package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/cluster"
)

// TestAPIDocExamples sends every curl command of the sh blocks of
// docs/api.md, in the order shown, to a three-member cluster that starts
// empty (so revisions are those the page shows), without the curl binary:
// each command's options become a net/http request (curlRequest), and an
// option the test does not know fails it. Each answer must be a 2xx, or
// the status its comment begins with ("# 410 ..."); where the page shows
// the answer as JSON (its comment, or the "# {...}" lines right below
// it), the real answer must have the same keys at every level (the values
// differ: hashes, times). A watch (-N) is read until it has shown as many
// lines as the page does.
//
// As in TestDocExamples, 127.0.0.1:8001..8003 (and 7001..7003) are the
// members n1..n3, 127.0.0.1:8004 and :7004 the addresses of the member n4
// the page adds (the test starts it once the page has added it), and any
// other 127.0.0.1:7xxx or :8xxx a free port. What the page's examples
// assume of the cluster beyond what the examples before them did is made
// by the functions of before and after, named by the example they go with
// (each must still be on the page).
func TestAPIDocExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	examples := shExamples(t, "docs/api.md")
	c := cluster.New(t, cluster.Options{Kind: cluster.Proc, Slots: 4})
	c.Start(t, 3)
	dir := t.TempDir()

	ports := map[string]string{}
	for i := 0; i < 4; i++ {
		ports[fmt.Sprintf("127.0.0.1:%d", 7001+i)] = c.Member(i).RaftAddr()
		ports[fmt.Sprintf("127.0.0.1:%d", 8001+i)] = strings.TrimPrefix(c.URL(i), "http://")
	}
	rewrite := func(s string) string {
		return docPort.ReplaceAllStringFunc(s, func(m string) string {
			if _, ok := ports[m]; !ok {
				ports[m] = freePort(t)
			}
			return ports[m]
		})
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			env = append(env, kv)
		}
	}
	cairn := func(where string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary(t), args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: cairn %s: %v\n%s", where, strings.Join(args, " "), err, out)
		}
	}
	leader := func() string { return c.URL(c.Leader(t)) }
	txn := func(where string, body string) uint64 {
		t.Helper()
		r, err := c.HTTP.Do(context.Background(), http.MethodPost, leader()+"/v1/txn", []byte(body), nil)
		if err != nil || r.Code != http.StatusOK {
			t.Fatalf("%s: txn %s: %v %v", where, body, r, err)
		}
		return r.Revision()
	}

	// space sets n1's space limits (PUT /v1/maintenance/space).
	space := func(where, body string) {
		t.Helper()
		r, err := c.HTTP.Do(context.Background(), http.MethodPut, c.URL(0)+"/v1/maintenance/space", []byte(body), nil)
		if err != nil || r.Code != http.StatusOK {
			t.Fatalf("%s: space %s: %v %v", where, body, r, err)
		}
	}
	st, err := c.Status(0)
	if err != nil {
		t.Fatal(err)
	}
	minFree := st.MinFreeBytes

	// Before the example (its text as on the page).
	before := map[string]func(where string){
		// The transaction example's preconditions: acct/a last written at 4,
		// acct/b present.
		`curl -X DELETE 'http://127.0.0.1:8001/v1/kv/users/?prefix=true'`: func(where string) {
			body := `{"operations":[{"op":"put","key":"acct/a","value":"MTAw"},{"op":"put","key":"acct/b","value":"MA=="}]}`
			if rev := txn(where, body); rev != 4 {
				t.Fatalf("%s: acct/a written at %d, the page's transaction expects 4", where, rev)
			}
		},
		// A listing with more than one page.
		`curl 'http://127.0.0.1:8001/v1/kv?prefix=users/&limit=100'`: func(where string) {
			c.WriteKeys(t, "users/", 101)
		},
		// The member n4 the example before added runs (it joins with the
		// same addresses: a no-op), so that it can be promoted.
		`curl -X POST http://127.0.0.1:8001/v1/cluster/members/n4/promote`: func(where string) {
			if idx := c.AddMember(t, true); idx != 3 {
				t.Fatalf("%s: started member %d, want n4", where, idx+1)
			}
		},
		// The transactions the watch example shows: a put by ann, then a
		// delete of the prefix.
		`curl -N 'http://127.0.0.1:8001/v1/watch?prefix=users/&from_revision=107'`: func(where string) {
			txn(where, `{"operations":[{"op":"put","key":"users/ann","value":"eyJ9"}],"user":"ann"}`)
			txn(where, `{"operations":[{"op":"delete_prefix","key":"users/"}]}`)
		},
		// What the alarms example shows: an alarm, raised by n1 refusing a
		// write under a reserve of free disk no disk has (put back after
		// the example), and a member that does not answer: n4 stops (n1,
		// n2 and n4 are the voters now, so two of three make a quorum).
		`curl http://127.0.0.1:8001/v1/alarms`: func(where string) {
			space(where, `{"min_free_bytes": 281474976710656}`)
			r, err := c.HTTP.Do(context.Background(), http.MethodPut, c.URL(0)+"/v1/kv/refused", []byte("v"), nil)
			if err != nil || r.Code != http.StatusInsufficientStorage {
				t.Fatalf("%s: a write under a 256 TiB reserve: %v %v", where, r, err)
			}
			c.Stop(t, 3)
		},
		// The standby at :8101: a member of its own cluster restored from
		// full.bak (the backup example's file), as docs/mirror.md
		// re-seeds one. It resumes after the backup's head, which the
		// source still has (compacted to 100 only).
		`curl -X POST http://127.0.0.1:8101/v1/mirror/start -d '{"sources":["http://127.0.0.1:8001","http://127.0.0.1:8002"]}'`: func(where string) {
			cairn(where, "restore", "full.bak", "--data-dir", "standby/s1", "--id", "s1")
			args := []string{"node", "run", "--id", "s1", "--data-dir", "standby/s1",
				"--raft-addr", rewrite("127.0.0.1:7101"), "--http-addr", rewrite("127.0.0.1:8101"), "--bootstrap"}
			url := startDocMember(t, where, dir, env, args)
			waitDocMember(t, where, dir, env, url)
		},
	}
	// After the example.
	after := map[string]func(where string){
		// The member removed stops (it is no longer in the cluster).
		`curl -X DELETE http://127.0.0.1:8001/v1/cluster/members/n3`: func(where string) {
			c.Stop(t, 2)
		},
		`curl http://127.0.0.1:8001/v1/alarms`: func(where string) {
			space(where, fmt.Sprintf(`{"min_free_bytes": %d}`, minFree))
		},
	}
	used := map[string]bool{}

	// As curl: no Accept-Encoding unless asked (--compressed), so the
	// answers are what curl would print.
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(hc.CloseIdleConnections) // before the cluster's goroutine count
	for _, e := range examples {
		where := e.String()
		words, comment, err := shellWords(e.text)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if comment == "" {
			comment = e.comment
		}
		if words[0] != "curl" {
			t.Fatalf("%s: the test runs only curl", where)
		}
		if f := before[e.text]; f != nil {
			used[e.text] = true
			f(where)
		}
		for i := range words {
			words[i] = rewrite(words[i])
		}
		cr, err := curlRequest(words[1:])
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		want := 0
		if m := docStatus.FindStringSubmatch(comment); m != nil {
			want, _ = strconv.Atoi(m[1])
		}
		var shown []string
		if strings.HasPrefix(comment, "{") {
			shown = append(shown, comment)
		}
		shown = append(shown, e.shown...)

		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		resp, err := hc.Do(cr.req.WithContext(ctx))
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", where, err)
		}
		ok := resp.StatusCode/100 == 2
		if want != 0 {
			ok = resp.StatusCode == want
		}
		if !ok {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			t.Fatalf("%s: %s\n%s", where, resp.Status, body)
		}
		var got []string
		switch {
		case cr.stream:
			// Read as many lines as the page shows; a progress line the
			// page does not show where it shows a transaction is skipped
			// (the stream sends one every second).
			sc := bufio.NewScanner(resp.Body)
			for i := 0; i < len(shown) && sc.Scan(); {
				line := sc.Text()
				if shapeType(line) == "progress" && shapeType(shown[i]) != "progress" {
					continue
				}
				got = append(got, line)
				i++
			}
			if len(got) < len(shown) {
				t.Fatalf("%s: the stream ended after %d lines (%v), the page shows %d:\n%s", where, len(got), sc.Err(), len(shown), strings.Join(got, "\n"))
			}
		default:
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if cr.output != "" {
				if len(body) == 0 {
					t.Fatalf("%s: empty answer", where)
				}
				if err := os.WriteFile(filepath.Join(dir, cr.output), body, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got = []string{string(body)}
			if len(shown) > 1 {
				t.Fatalf("%s: the page shows %d answers of a request that is no stream", where, len(shown))
			}
		}
		resp.Body.Close()
		cancel()
		for i, s := range shown {
			if err := sameJSONShape(s, got[i]); err != nil {
				t.Errorf("%s: the answer is not what the page shows: %v\npage: %s\nreal: %s", where, err, s, got[i])
			}
		}
		t.Logf("%s: %s\n%s", where, resp.Status, strings.Join(got, "\n"))
		if f := after[e.text]; f != nil {
			used["after "+e.text] = true
			f(where)
		}
	}
	for k := range before {
		if !used[k] {
			t.Errorf("before: %q is not on docs/api.md any more", k)
		}
	}
	for k := range after {
		if !used["after "+k] {
			t.Errorf("after: %q is not on docs/api.md any more", k)
		}
	}
}

// docStatus matches a comment that gives an example's HTTP status.
var docStatus = regexp.MustCompile(`^(\d{3}) `)

// curlCall is a curl command line as a Go request.
type curlCall struct {
	req    *http.Request
	output string // -o FILE
	stream bool   // -N: read the answer as it comes
}

// curlRequest makes the request curl would send for its arguments: the
// options docs/api.md uses, and no other (an unknown option is an error,
// so that a new example cannot pass untested). As curl does, -d and
// --data-binary make the method POST unless -X says otherwise and the
// body's Content-Type application/x-www-form-urlencoded unless a -H says
// otherwise; several -d are joined with "&".
func curlRequest(args []string) (curlCall, error) {
	var (
		out     curlCall
		method  string
		url     string
		data    []string
		hasData bool
		hdr     = http.Header{}
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("curl: %s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch a {
		case "-X", "--request":
			method, err = value()
		case "-d", "--data", "--data-binary":
			var v string
			v, err = value()
			if strings.HasPrefix(v, "@") {
				return out, fmt.Errorf("curl: %s %s: data from a file", a, v)
			}
			data, hasData = append(data, v), true
		case "-H", "--header":
			var v string
			v, err = value()
			name, val, ok := strings.Cut(v, ":")
			if !ok {
				return out, fmt.Errorf("curl: header %q", v)
			}
			hdr.Add(strings.TrimSpace(name), strings.TrimSpace(val))
		case "-o", "--output":
			out.output, err = value()
			if filepath.IsAbs(out.output) || strings.Contains(out.output, "..") {
				return out, fmt.Errorf("curl: -o %s: a file name in the current directory, please", out.output)
			}
		case "-N", "--no-buffer":
			out.stream = true
		default:
			if strings.HasPrefix(a, "-") {
				return out, fmt.Errorf("curl: option %s is unknown to the test: teach curlRequest what it does", a)
			}
			if url != "" {
				return out, fmt.Errorf("curl: two URLs: %s and %s", url, a)
			}
			url = a
		}
		if err != nil {
			return out, err
		}
	}
	if url == "" {
		return out, fmt.Errorf("curl: no URL")
	}
	if method == "" {
		method = http.MethodGet
		if hasData {
			method = http.MethodPost
		}
	}
	var body io.Reader
	if hasData {
		body = strings.NewReader(strings.Join(data, "&"))
		if hdr.Get("Content-Type") == "" {
			hdr.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return out, fmt.Errorf("curl: %w", err)
	}
	req.Header.Set("Accept", "*/*") // curl's default
	for k, v := range hdr {
		req.Header[k] = slices.Clone(v)
	}
	out.req = req
	return out, nil
}

// shellWords splits a command line into words as a POSIX shell would for
// the quoting the pages use: single quotes, double quotes (with \" \\ \$
// \` escapes), backslash escapes, and a "#" starting a word begins a
// comment, which it returns ("# " removed). Anything that would need a
// shell to expand or redirect (unquoted $ ` | & ; < > ( ) * ?) is an error.
func shellWords(s string) (words []string, comment string, err error) {
	var (
		w      strings.Builder
		inWord bool
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
		case ch == '#' && !inWord:
			return words, strings.TrimSpace(s[i+1:]), nil
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, "", fmt.Errorf("unterminated ' in %q", s)
			}
			w.WriteString(s[i+1 : i+1+j])
			i, inWord = i+1+j, true
		case ch == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, "", fmt.Errorf(`unterminated " in %q`, s)
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '$' || s[i] == '`' {
					return nil, "", fmt.Errorf("%q needs a shell to expand %c", s, s[i])
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
		case ch == '\\':
			if i+1 < len(s) {
				i++
				w.WriteByte(s[i])
				inWord = true
			}
		case strings.IndexByte("$`|&;<>()*?", ch) >= 0:
			return nil, "", fmt.Errorf("%q needs a shell (%c); keep the examples plain", s, ch)
		default:
			w.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	if len(words) == 0 {
		return nil, "", fmt.Errorf("no command in %q", s)
	}
	return words, comment, nil
}

// shapeType returns the "type" of a JSON object line ("" when it has none).
func shapeType(line string) string {
	var v struct{ Type string }
	_ = json.Unmarshal([]byte(docJSON(line)), &v)
	return v.Type
}

// docJSON makes a page's JSON, which elides arrays as [...] and strings
// as "5c1e...", valid: [...] becomes [], and what follows the first
// value (a comment's prose) is dropped by the decoder.
func docJSON(s string) string { return strings.ReplaceAll(s, "[...]", "[]") }

// sameJSONShape reports how the real answer differs in shape from the
// page's: every object must have the same keys as the page's, with values
// of the same JSON kinds; an array's elements have the shape of the page's
// (its last shown element for those beyond); an empty array on the page
// says nothing of the elements.
func sameJSONShape(page, real string) error {
	var p, r any
	if err := json.NewDecoder(strings.NewReader(docJSON(page))).Decode(&p); err != nil {
		return fmt.Errorf("the page's JSON: %w", err)
	}
	if err := json.Unmarshal([]byte(real), &r); err != nil {
		return fmt.Errorf("the answer is not JSON: %w", err)
	}
	return shapeDiff("", p, r)
}

func shapeDiff(path string, p, r any) error {
	kind := func(v any) string {
		switch v.(type) {
		case map[string]any:
			return "object"
		case []any:
			return "array"
		case string:
			return "string"
		case float64:
			return "number"
		case bool:
			return "bool"
		}
		return "null"
	}
	if kind(p) != kind(r) {
		return fmt.Errorf("%s: the page shows a %s, the answer has a %s", "."+path, kind(p), kind(r))
	}
	switch p := p.(type) {
	case map[string]any:
		r := r.(map[string]any)
		var missing, extra []string
		for k := range p {
			if _, ok := r[k]; !ok {
				missing = append(missing, k)
			}
		}
		for k := range r {
			if _, ok := p[k]; !ok {
				extra = append(extra, k)
			}
		}
		if len(missing)+len(extra) > 0 {
			sort.Strings(missing)
			sort.Strings(extra)
			return fmt.Errorf(".%s: keys the answer lacks %v, keys the page lacks %v", path, missing, extra)
		}
		keys := make([]string, 0, len(p))
		for k := range p {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := shapeDiff(strings.TrimPrefix(path+"."+k, "."), p[k], r[k]); err != nil {
				return err
			}
		}
	case []any:
		r := r.([]any)
		if len(p) == 0 {
			return nil
		}
		for i, v := range r {
			if err := shapeDiff(fmt.Sprintf("%s[%d]", path, i), p[min(i, len(p)-1)], v); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestAPIDocHelpers checks the parts of TestAPIDocExamples that decide
// what a page's command sends and whether its answer is what the page
// shows.
func TestAPIDocHelpers(t *testing.T) {
	words, comment, err := shellWords(`curl -X POST "http://h/a b" -d '{"k": "v w"}' x\ y  # {"revision":1}`)
	if err != nil || !slices.Equal(words, []string{"curl", "-X", "POST", "http://h/a b", "-d", `{"k": "v w"}`, "x y"}) || comment != `{"revision":1}` {
		t.Errorf("shellWords: %q %q %v", words, comment, err)
	}
	for _, s := range []string{"curl $URL", "curl a | jq", "curl 'a", `curl "a`, "curl a > f", "curl `x`", "curl a; rm b"} {
		if _, _, err := shellWords(s); err == nil {
			t.Errorf("shellWords(%q): no error", s)
		}
	}

	cr, err := curlRequest([]string{"-H", "Idempotency-Key: k1", "-d", `{"a":1}`, "http://h/v1/txn"})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(cr.req.Body)
	if cr.req.Method != http.MethodPost || cr.req.URL.String() != "http://h/v1/txn" || string(body) != `{"a":1}` ||
		cr.req.Header.Get("Idempotency-Key") != "k1" || cr.req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("curlRequest: %s %s %q %v", cr.req.Method, cr.req.URL, body, cr.req.Header)
	}
	cr, err = curlRequest([]string{"-X", "PUT", "--data-binary", "v", "-o", "f.bak", "-N", "http://h/x"})
	if err != nil || cr.req.Method != http.MethodPut || cr.output != "f.bak" || !cr.stream {
		t.Errorf("curlRequest: %+v %v", cr, err)
	}
	for _, args := range [][]string{{"-s", "http://h/"}, {"--json", "{}", "http://h/"}, {"-X"}, {"-d", "@f", "http://h/"}, {"-o", "../f", "http://h/"}, {"http://a/", "http://b/"}, {"-X", "GET"}} {
		if _, err := curlRequest(args); err == nil {
			t.Errorf("curlRequest(%q): no error", args)
		}
	}

	for _, c := range []struct {
		page, real string
		ok         bool
	}{
		{`{"revision":9,"kvs":[...],"more":true} (head)`, `{"revision":3,"kvs":[{"key":"a"}],"more":false}`, true},
		{`{"revision":9}`, `{"revision":3,"hash":"x"}`, false},
		{`{"revision":9,"hash":"..."}`, `{"revision":3}`, false},
		{`{"revision":9}`, `{"revision":"3"}`, false},
		{`{"a":[{"b":1}]}`, `{"a":[{"b":2},{"c":1}]}`, false},
		{`{"a":[{"b":1}]}`, `{"a":[]}`, true},
		{`{"a":1}`, `not json`, false},
	} {
		if err := sameJSONShape(c.page, c.real); (err == nil) != c.ok {
			t.Errorf("sameJSONShape(%s, %s): %v", c.page, c.real, err)
		}
	}
}
