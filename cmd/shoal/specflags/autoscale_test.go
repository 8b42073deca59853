package specflags

import (
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestParseAutoscale(t *testing.T) {
	tests := []struct {
		in   string
		want *api.AutoscaleConfig
		err  string
	}{
		{"min=2,max=10,cpu=70%", &api.AutoscaleConfig{Min: 2, Max: 10, CPUPercent: 70}, ""},
		{"min=2,max=10,cpu=70%,memory=80%", &api.AutoscaleConfig{Min: 2, Max: 10, CPUPercent: 70, MemoryPercent: 80}, ""},
		{"max=3, min=1, cpu=50", &api.AutoscaleConfig{Min: 1, Max: 3, CPUPercent: 50}, ""},
		{"min=1,max=1,memory=12.5%", &api.AutoscaleConfig{Min: 1, Max: 1, MemoryPercent: 12.5}, ""},
		{"min=1,max=3,cpu=50%,up-delay=5s,down-delay=10s", &api.AutoscaleConfig{Min: 1, Max: 3, CPUPercent: 50, ScaleUpDelay: 5 * time.Second, ScaleDownDelay: 10 * time.Second}, ""},
		{"off", nil, ""},
		{"", nil, "want key=value"},
		{"min=2,max=10", nil, "needs a cpu or memory target"},
		{"max=10,cpu=70%", nil, "min and max are required"},
		{"min=2,cpu=70%", nil, "min and max are required"},
		{"min=0,max=3,cpu=50%", nil, "min=0: must be at least 1"},
		{"min=3,max=2,cpu=50%", nil, "max=2: must be at least min (3)"},
		{"min=-1,max=2,cpu=50%", nil, "min=-1: want a whole number"},
		{"min=1,max=2,cpu=abc", nil, "cpu=abc: want a percentage"},
		{"min=1,max=2,cpu=0%", nil, "cpu=0%: want a percentage above 0"},
		{"min=1,max=2,cpu=-5%", nil, "want a percentage above 0"},
		{"min=1,max=2,cpu=NaN", nil, "want a percentage above 0"},
		{"min=1,max=2,cpu=50%,cpu=60%", nil, "cpu given twice"},
		{"min=1,max=2,cpu=50%,disk=5%", nil, `unknown key "disk"`},
		{"min=1,max=2,cpu=50%,up-delay=-1s", nil, "up-delay=-1s: want a non-negative duration"},
		{"min=1,max=2,cpu", nil, `"cpu": want key=value`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseAutoscale(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
