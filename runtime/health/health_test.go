package health

import (
	"reflect"
	"testing"

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
