package httpapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// checkJSON checks a well-formed JSON value (encoding/json decoded it into
// a value of type t) for what encoding/json accepts and changes without a
// word: a string that is not valid UTF-8 or holds a lone surrogate escape
// ("\ud800"), both decoded as U+FFFD; an object that names a key twice, of
// which the last wins; and, in an object decoded into a struct, a field
// name in other case than the struct's tag (encoding/json matches names
// case-insensitively). Keys are compared as decoded ("a" and "\u0061" are
// the same key). Values of an interface type, of a type that decodes
// itself (json.Unmarshaler) and map keys are checked for UTF-8 and
// duplicates only. The error names where in the value it is.
func checkJSON(b []byte, t reflect.Type) error {
	c := jsonChecker{b: b}
	return c.value(t, "")
}

type jsonChecker struct {
	b []byte
	i int
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// where names a place in the value for an error.
func where(at string) string {
	if at == "" {
		return "the body"
	}
	return at
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
func (c *jsonChecker) value(t reflect.Type, at string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Kind() == reflect.Interface || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil
	}
	c.space()
	switch c.b[c.i] {
	case '{':
		return c.object(t, at)
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
			if err := c.value(elem, at+"["+strconv.Itoa(n)+"]"); err != nil {
				return err
			}
			c.space()
			c.i++ // ',' or ']'
			if c.b[c.i-1] == ']' {
				return nil
			}
		}
	case '"':
		if _, err := c.str(false); err != nil {
			return fmt.Errorf("%s: %w", where(at), err)
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
func (c *jsonChecker) object(t reflect.Type, at string) error {
	var fields map[string]reflect.Type // t is a struct: its fields by JSON name
	var elem reflect.Type              // t is a map: its values' type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = jsonFields(t)
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
	seen := map[string]bool{}
	for {
		c.space()
		key, err := c.str(true)
		if err != nil {
			return fmt.Errorf("a key in %s: %w", where(at), err)
		}
		if seen[key] {
			return fmt.Errorf("key %q given twice in %s", key, where(at))
		}
		seen[key] = true
		next := key
		if at != "" {
			next = at + "." + key
		}
		ft := elem
		if fields != nil {
			var ok bool
			if ft, ok = fields[key]; !ok {
				for name := range fields {
					if strings.EqualFold(name, key) {
						return fmt.Errorf("field %q in %s: field names are case-sensitive (use %q)", key, where(at), name)
					}
				}
				// DisallowUnknownFields let it through: an unexported
				// or ignored field. Check its value as anything.
			}
		}
		c.space()
		c.i++ // ':'
		if err := c.value(ft, next); err != nil {
			return err
		}
		c.space()
		c.i++ // ',' or '}'
		if c.b[c.i-1] == '}' {
			return nil
		}
	}
}

// jsonFields returns a struct's fields by the names encoding/json gives
// them (embedded structs' fields promoted).
func jsonFields(t reflect.Type) map[string]reflect.Type {
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
	return out
}

// str checks the string at c.i and moves past it; with decode, it returns
// the string decoded.
func (c *jsonChecker) str(decode bool) (string, error) {
	start := c.i
	c.i++ // '"'
	var out []byte
	for {
		ch := c.b[c.i]
		switch {
		case ch == '"':
			c.i++
			return string(out), nil
		case ch == '\\':
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
					return "", fmt.Errorf("the string at byte %d holds a lone surrogate escape \\u%04x (not a character)", start, r)
				}
			}
			if decode {
				out = utf8.AppendRune(out, r)
			}
		case ch < utf8.RuneSelf:
			c.i++
			if decode {
				out = append(out, ch)
			}
		default:
			r, size := utf8.DecodeRune(c.b[c.i:])
			if r == utf8.RuneError && size == 1 {
				return "", fmt.Errorf("the string at byte %d is not valid UTF-8", start)
			}
			if decode {
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
