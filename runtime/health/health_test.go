package health

import (
	"reflect"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestStep(t *testing.T) {
	const S, H, U = api.HealthStarting, api.HealthHealthy, api.HealthUnhealthy
	tests := []struct {
		name        string
		status      string
		streak      int
		ok, inStart bool
		retries     int
		want        string
		wantStreak  int
	}{
		{"success makes healthy", S, 0, true, false, 3, H, 0},
		{"success in start period", S, 0, true, true, 3, H, 0},
		{"failure in start period not counted", S, 0, false, true, 3, S, 0},
		{"failure after start period counts", S, 0, false, false, 3, S, 1},
		{"retries reached", S, 2, false, false, 3, U, 3},
		{"healthy then one failure", H, 0, false, false, 3, H, 1},
		{"healthy failures in start period count once started", H, 2, false, true, 3, U, 3},
		{"unhealthy recovers", U, 5, true, false, 3, H, 0},
		{"single retry", H, 0, false, false, 1, U, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, streak := Step(tt.status, tt.streak, tt.ok, tt.inStart, tt.retries)
			if got != tt.want || streak != tt.wantStreak {
				t.Errorf("got %s/%d want %s/%d", got, streak, tt.want, tt.wantStreak)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		test    []string
		want    []string
		wantErr bool
	}{
		{[]string{"CMD", "true"}, []string{"true"}, false},
		{[]string{"CMD-SHELL", "test -e /x"}, []string{"/bin/sh", "-c", "test -e /x"}, false},
		{[]string{"curl -f localhost"}, []string{"/bin/sh", "-c", "curl -f localhost"}, false},
		{[]string{"CMD"}, nil, true},
		{nil, nil, true},
	}
	for _, tt := range tests {
		got, err := Args(tt.test)
		if tt.wantErr != (err != nil) || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Args(%q) = %q, %v", tt.test, got, err)
		}
	}
}

// TestFromImage: an image's interval and timeout are at least a second,
// its timeout at most MaxImageTimeout, its start period at most
// MaxImageStartPeriod; zero fields stay zero (Docker's defaults) and the
// rest is kept.
func TestFromImage(t *testing.T) {
	test := []string{"CMD", "true"}
	tests := []struct {
		name    string
		in, out api.HealthConfig
	}{
		{"1ns interval and timeout",
			api.HealthConfig{Test: test, Interval: time.Nanosecond, Timeout: time.Nanosecond, Retries: 2},
			api.HealthConfig{Test: test, Interval: time.Second, Timeout: time.Second, Retries: 2}},
		{"defaults stay defaults",
			api.HealthConfig{Test: test},
			api.HealthConfig{Test: test}},
		{"reasonable values kept",
			api.HealthConfig{Test: test, Interval: 5 * time.Second, Timeout: 3 * time.Second, StartPeriod: time.Minute},
			api.HealthConfig{Test: test, Interval: 5 * time.Second, Timeout: 3 * time.Second, StartPeriod: time.Minute}},
		{"a probe held for a year, a start period of a century",
			api.HealthConfig{Test: test, Interval: time.Hour, Timeout: 365 * 24 * time.Hour, StartPeriod: 100 * 365 * 24 * time.Hour},
			api.HealthConfig{Test: test, Interval: time.Hour, Timeout: MaxImageTimeout, StartPeriod: MaxImageStartPeriod}},
	}
	for _, tt := range tests {
		if got := FromImage(tt.in); !reflect.DeepEqual(got, tt.out) {
			t.Errorf("%s: FromImage(%+v) = %+v, want %+v", tt.name, tt.in, got, tt.out)
		}
	}
}
