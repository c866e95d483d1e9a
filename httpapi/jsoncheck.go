package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// checkJSON checks a well-formed JSON value (encoding/json decoded it into
// a value of type t) for what encoding/json accepts and changes or drops
// without a word: a field a struct does not have (unknown fields); a string that is not valid UTF-8 or holds a lone surrogate escape
// ("\ud800"), both decoded as U+FFFD; an object that names a key twice, of
// which the last wins; and, in an object decoded into a struct, a field
// name in other case than the struct's tag (encoding/json matches names
// case-insensitively). Keys are compared as decoded ("a" and "\u0061" are
// the same key). Values of an interface type, of a type that decodes
// itself (json.Unmarshaler) and map keys are checked for UTF-8 and
// duplicates only. The error names where in the value it is.
func checkJSON(b []byte, t reflect.Type) error {
	c := jsonChecker{b: b}
	return c.value(t)
}

type jsonChecker struct {
	b []byte
	i int
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// jsonError is what checkJSON found, and where: the path to it is built
// while the error returns through the values that hold it, so that a value
// that passes costs no allocation for its path.
type jsonError struct {
	rpath []string // the path's segments, innermost first
	msg   string
}

func (e *jsonError) Error() string {
	if len(e.rpath) == 0 {
		return e.msg + " (in the body)"
	}
	var b strings.Builder
	for i := len(e.rpath) - 1; i >= 0; i-- {
		if i < len(e.rpath)-1 && e.rpath[i][0] != '[' {
			b.WriteByte('.')
		}
		b.WriteString(e.rpath[i])
	}
	return e.msg + " (in " + b.String() + ")"
}

// under adds a segment to the path of err (a *jsonError).
func under(err error, seg string) error {
	if e, ok := err.(*jsonError); ok {
		e.rpath = append(e.rpath, seg)
	}
	return err
}

func jsonErrorf(format string, args ...any) error {
	return &jsonError{msg: fmt.Sprintf(format, args...)}
}

func (c *jsonChecker) space() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

// value checks the value at c.i, to be decoded into t (nil: anything).
func (c *jsonChecker) value(t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Kind() == reflect.Interface || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil
	}
	c.space()
	switch c.b[c.i] {
	case '{':
		return c.object(t)
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		c.i++
		c.space()
		if c.b[c.i] == ']' {
			c.i++
			return nil
		}
		for n := 0; ; n++ {
			if err := c.value(elem); err != nil {
				return under(err, "["+strconv.Itoa(n)+"]")
			}
			c.space()
			c.i++ // ',' or ']'
			if c.b[c.i-1] == ']' {
				return nil
			}
		}
	case '"':
		if _, err := c.str(false); err != nil {
			return err
		}
		return nil
	}
	// A number, true, false or null.
	for c.i < len(c.b) && !strings.ContainsRune(",]} \t\r\n", rune(c.b[c.i])) {
		c.i++
	}
	return nil
}

// object checks the object at c.i, to be decoded into t.
func (c *jsonChecker) object(t reflect.Type) error {
	var fields map[string]reflect.Type // t is a struct: its fields by JSON name
	var elem reflect.Type              // t is a map: its values' type
	isStruct := false
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields, isStruct = jsonFields(t), true
		case reflect.Map:
			elem = t.Elem()
		}
	}
	c.i++ // '{'
	c.space()
	if c.b[c.i] == '}' {
		c.i++
		return nil
	}
	// The keys so far: a slice scanned in order while the object is
	// small (most are), then a set.
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	var seenSet map[string]struct{}
	for {
		c.space()
		key, err := c.str(true)
		if err != nil {
			return err
		}
		dup := false
		if seenSet != nil {
			_, dup = seenSet[string(key)]
			seenSet[string(key)] = struct{}{}
		} else {
			for _, k := range seen {
				dup = dup || bytes.Equal(k, key)
			}
			if seen = append(seen, key); len(seen) > 16 {
				seenSet = make(map[string]struct{}, 2*len(seen))
				for _, k := range seen {
					seenSet[string(k)] = struct{}{}
				}
			}
		}
		if dup {
			return jsonErrorf("key %q given twice", key)
		}
		ft := elem
		if isStruct {
			var ok bool
			if ft, ok = fields[string(key)]; !ok {
				for name := range fields {
					if strings.EqualFold(name, string(key)) {
						return jsonErrorf("field %q: field names are case-sensitive (use %q)", key, name)
					}
				}
				return jsonErrorf("unknown field %q", key)
			}
		}
		c.space()
		c.i++ // ':'
		if err := c.value(ft); err != nil {
			return under(err, string(key))
		}
		c.space()
		c.i++ // ',' or '}'
		if c.b[c.i-1] == '}' {
			return nil
		}
	}
}

// fieldsCache holds jsonFields by type.
var fieldsCache sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields returns a struct's fields by the names encoding/json gives
// them (embedded structs' fields promoted).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldsCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, typ := range jsonFields(ft) {
					if _, ok := out[n]; !ok {
						out[n] = typ
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	fieldsCache.Store(t, out)
	return out
}

// str checks the string at c.i and moves past it; with decode, it returns
// the string decoded (a slice of the body when it holds no escape).
func (c *jsonChecker) str(decode bool) ([]byte, error) {
	start := c.i
	c.i++ // '"'
	var out []byte
	escaped := false
	for {
		ch := c.b[c.i]
		switch {
		case ch == '"':
			c.i++
			if !escaped {
				return c.b[start+1 : c.i-1], nil
			}
			return out, nil
		case ch == '\\':
			if decode && !escaped {
				out = append(out, c.b[start+1:c.i]...)
			}
			escaped = true
			e := c.b[c.i+1]
			if e != 'u' {
				c.i += 2
				if decode {
					out = append(out, unescape(e))
				}
				continue
			}
			r := hex4(c.b[c.i+2 : c.i+6])
			c.i += 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if r < 0xdc00 && c.i+6 <= len(c.b) && c.b[c.i] == '\\' && c.b[c.i+1] == 'u' {
					r2 = hex4(c.b[c.i+2 : c.i+6])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					c.i += 6
				} else {
					return nil, jsonErrorf("the string at byte %d holds a lone surrogate escape \\u%04x (not a character)", start, r)
				}
			}
			if decode {
				out = utf8.AppendRune(out, r)
			}
		case ch < utf8.RuneSelf:
			c.i++
			if decode && escaped {
				out = append(out, ch)
			}
		default:
			r, size := utf8.DecodeRune(c.b[c.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, jsonErrorf("the string at byte %d is not valid UTF-8", start)
			}
			if decode && escaped {
				out = append(out, c.b[c.i:c.i+size]...)
			}
			c.i += size
		}
	}
}

// hex4 parses the four hex digits of a \u escape (well-formed JSON).
func hex4(b []byte) rune {
	v, _ := strconv.ParseUint(string(b), 16, 32)
	return rune(v)
}

// unescape is the byte a one-letter escape stands for (\n: a newline).
func unescape(e byte) byte {
	switch e {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return e // '"', '\\', '/'
}
