package rmq

import "fmt"

type config struct{}

// Config is the listener's own key/value configuration (the [listener.config] table of the
// host config).
var Config config

// Get is the value for key; ok is false when it is not configured.
func (config) Get(key string) (value string, ok bool) { return hostConfigGet(key) }

// Or is the value for key, or def when it is not configured.
func (config) Or(key, def string) string {
	if v, ok := hostConfigGet(key); ok {
		return v
	}
	return def
}

// Require is the value for key, or an error naming the key when it is not configured.
func (config) Require(key string) (string, error) {
	if v, ok := hostConfigGet(key); ok {
		return v, nil
	}
	return "", fmt.Errorf("config key %s is not set", key)
}

// All is every configured pair, sorted by key.
func (config) All() []Property { return hostConfigAll() }
