package bridge

import "testing"

func TestVersionBelow(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"6.2.14", true}, {"6.0.0", true}, {"5.0.7", true}, {"7.0.0", false}, {"7.0.15", false},
		{"7.2.4", false}, {"7", false}, {"8.0.1", false}, {"10.0", false}, {"6.9.99", true}, {"", true},
		{"7.0-rc1", false},
	} {
		if got := versionBelow(tc.v, MinRedisVersion); got != tc.want {
			t.Errorf("versionBelow(%q, %q) = %v, want %v", tc.v, MinRedisVersion, got, tc.want)
		}
	}
}
