package dbconn

import (
	"net/url"
	"strings"
)

// pgxOnly are the connection-string parameters pgx reads for itself and
// libpq rejects ("invalid URI query parameter" from pg_dump); those starting
// with "pool_" are pgxpool's. pgconn's own extras (krbspn, servicefile) are
// left for libpq to refuse: dropping them would change whom the tool
// connects as without a word.
var pgxOnly = map[string]bool{
	"default_query_exec_mode":    true,
	"statement_cache_capacity":   true,
	"description_cache_capacity": true,
}

// IsPgxOnly reports whether a connection-string parameter is meant for pgx
// alone and would make a libpq tool refuse the string.
func IsPgxOnly(key string) bool {
	key = strings.ToLower(key)
	return pgxOnly[key] || strings.HasPrefix(key, "pool_")
}

// ForLibpq returns connString without the parameters only pgx understands
// (default_query_exec_mode, statement_cache_capacity,
// description_cache_capacity, pool_*, ...), for pg_dump, pg_restore and
// psql. Everything libpq knows (sslmode, connect_timeout, options,
// application_name, ...) passes through unchanged, as do the form
// (postgres:// URL or keyword/value) and the order of what is kept. A string
// it cannot parse is returned as it is, for the tool to report.
func ForLibpq(connString string) string {
	s := strings.TrimSpace(connString)
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return urlForLibpq(s)
	}
	return keywordsForLibpq(connString)
}

func urlForLibpq(s string) string {
	base, query, ok := strings.Cut(s, "?")
	if !ok {
		return s
	}
	var frag string
	query, frag, hasFrag := strings.Cut(query, "#")
	var kept []string
	for _, pair := range strings.Split(query, "&") {
		if pair == "" {
			continue
		}
		k, _, _ := strings.Cut(pair, "=")
		if key, err := url.QueryUnescape(k); err == nil && IsPgxOnly(key) {
			continue
		}
		kept = append(kept, pair)
	}
	out := base
	if len(kept) > 0 {
		out += "?" + strings.Join(kept, "&")
	}
	if hasFrag {
		out += "#" + frag
	}
	return out
}

// keywordsForLibpq drops pgx-only pairs from a keyword/value string
// ("host=db dbname=ip2a default_query_exec_mode=exec"), keeping the other
// pairs' text as written (quotes and escapes included).
func keywordsForLibpq(s string) string {
	var kept []string
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			break
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return s // not keyword/value: leave it to the tool
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(s) {
				return s // unterminated quote
			}
			i++
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
		}
		if !IsPgxOnly(key) {
			kept = append(kept, s[start:min(i, len(s))])
		}
	}
	return strings.Join(kept, " ")
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
