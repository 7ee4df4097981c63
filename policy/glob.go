package policy

import "strings"

// matchGlob matches s against an anchored glob: the whole string must match; `*`
// matches any run of characters except `/` and `:` (it never crosses a path or subject
// segment), `**` matches any run except `:`. Every other character is literal. Keeping
// wildcards inside one segment is what stops `repo:acme/*` from matching
// `repo:acme/x:pull_request`.
func matchGlob(pattern, s string) bool {
	for len(pattern) > 0 {
		i := strings.IndexByte(pattern, '*')
		if i < 0 {
			return pattern == s
		}
		if !strings.HasPrefix(s, pattern[:i]) {
			return false
		}
		s = s[i:]
		pattern = pattern[i:]
		deep := strings.HasPrefix(pattern, "**")
		if deep {
			pattern = strings.TrimLeft(pattern, "*")
		} else {
			pattern = pattern[1:]
		}
		// Try every split point the wildcard may consume, shortest first.
		for j := 0; ; j++ {
			if matchGlob(pattern, s[j:]) {
				return true
			}
			if j >= len(s) {
				return false
			}
			c := s[j]
			if c == ':' || (!deep && c == '/') {
				return false
			}
		}
	}
	return s == ""
}

// isGlob reports whether v contains a wildcard.
func isGlob(v string) bool { return strings.Contains(v, "*") }
