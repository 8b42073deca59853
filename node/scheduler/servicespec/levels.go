package servicespec

import (
	"reflect"
	"sort"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// Version skew and specs (docs/upgrades.md). An agent decodes the spec of
// each task it is given with its own release's api.ServiceSpec, and JSON
// drops the fields that release does not know without a word: a task whose
// spec says read_only or cap_drop ALL would start writable, with every
// default capability, on an agent older than those fields. So the leader
// places a task only on a node whose protocol level (consensus/fsm/command
// ProtocolLevel, advertised in gossip) knows every field the spec uses
// (placement.LevelFilter); the task waits, pending with the reason, for a
// node that does.

// baseLevel is the level every agent has (command.BaseProtocolLevel; this
// package may not import consensus, a test in node/leaderloop checks the two
// agree).
const baseLevel = 1

// fieldSince is the protocol level that introduced each field of
// api.ServiceSpec, by its Go name: an agent below it drops the field. A
// field added to ServiceSpec gets the level of the release that brings it
// (command.ProtocolLevel if no release was made at that level yet,
// otherwise raise ProtocolLevel); TestFieldSinceCoversSpec fails until it
// has one. Fields the agents never read (autoscaling, labels, policies the
// leader applies) stay at the base level, since an older agent loses
// nothing by not knowing them. Nested fields (a new option of a Mount, say)
// are not covered by this table: a change that adds one must give MinLevel
// a check of its own.
var fieldSince = map[string]int{
	"Name":            1,
	"Mode":            1,
	"Replicas":        1,
	"Image":           1,
	"Command":         1,
	"Entrypoint":      1,
	"Env":             1,
	"Workdir":         1,
	"User":            1,
	"Labels":          1,
	"Ports":           1,
	"Resources":       1,
	"Constraints":     1,
	"RestartPolicy":   1,
	"UpdateConfig":    1,
	"RollbackConfig":  1,
	"Healthcheck":     1,
	"StopGracePeriod": 1,
	"ForceUpdate":     1,
	"Secrets":         1,
	"Configs":         1,
	"Mounts":          1,
	"Networks":        1,
	"DisconnectGrace": 1,
	"AtMostOnce":      1,
	"NoRebalance":     1,
	"Autoscale":       1,
	"RegistryAuth":    1,
	// The container options of protocol level 3: an older agent would run
	// the task less restricted than its spec (or under another name).
	"ReadOnly":   3,
	"CapAdd":     3,
	"CapDrop":    3,
	"Sysctls":    3,
	"Ulimits":    3,
	"StopSignal": 3,
	"Hostname":   3,
	"ExtraHosts": 3,
	// Level 4 fields that no container carries: the endpoint mode and the
	// aliases are the state machine's and every node's DNS (a write that
	// sets them already needs every member at level 4:
	// command.EndpointLevel), the placement fields the leader's alone.
	"EndpointMode":         1,
	"NetworkAliases":       1,
	"MaxReplicasPerNode":   1,
	"PlacementPreferences": 1,
	// Level 4 fields an agent applies to the container it creates: an
	// older one would keep the node's default logs (or keep logs at all,
	// for driver none).
	"LogDriver":  4,
	"LogOptions": 4,
	// Jobs (level 5, JobLevel): the leader alone reads MaxConcurrent, but
	// it only means something with a job mode, which MinLevel checks.
	"MaxConcurrent": JobLevel,
}

// JobLevel is the protocol level that brought the job modes
// (api.ModeReplicatedJob, api.ModeGlobalJob). A job's tasks go only to
// nodes at this level: an older agent predates jobs (its task reports
// were never tested against a planner that reads "complete" as done), so
// the gate is conservative, as for any new value. command.JobLevel
// agrees (TestSpecLevelsWithinProtocol in node/leaderloop checks).
const JobLevel = 5

// leveled are the ServiceSpec fields above the base level, in field
// order: MinLevel looks only at them.
var leveled = func() []leveledField {
	var out []leveledField
	t := reflect.TypeOf(api.ServiceSpec{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		lvl, ok := fieldSince[f.Name]
		if !ok {
			// A field nobody gave a level: assume it needs this
			// package's newest known level rather than none
			// (TestFieldSinceCoversSpec fails meanwhile).
			lvl = maxFieldLevel()
		}
		if lvl <= baseLevel {
			continue
		}
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "" || name == "-" {
			name = f.Name
		}
		out = append(out, leveledField{index: i, json: name, level: lvl})
	}
	return out
}()

type leveledField struct {
	index int
	json  string
	level int
}

func maxFieldLevel() int {
	m := baseLevel
	for _, l := range fieldSince {
		m = max(m, l)
	}
	return m
}

// MinLevel is the protocol level an agent needs to run a task of spec as
// the spec says, and the fields (their JSON names, sorted) that need it; a
// spec that uses only base-level fields gives (1, nil). A field counts as
// used when it is not its zero value, nor an empty list or map: those
// decode the same on every release (omitempty leaves them out). Pure.
func MinLevel(spec *api.ServiceSpec) (level int, fields []string) {
	level = baseLevel
	v := reflect.ValueOf(spec).Elem()
	for _, f := range leveled {
		if !used(v.Field(f.index)) {
			continue
		}
		switch {
		case f.level > level:
			level, fields = f.level, []string{f.json}
		case f.level == level:
			fields = append(fields, f.json)
		}
	}
	// A value, not a field: the job modes came at JobLevel.
	if api.IsJob(spec.Mode) {
		switch {
		case JobLevel > level:
			level, fields = JobLevel, []string{"mode"}
		case JobLevel == level:
			fields = append(fields, "mode")
		}
	}
	sort.Strings(fields)
	return level, fields
}

// used reports whether a field's value would reach an agent: not zero, and
// for lists and maps not empty.
func used(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() > 0
	}
	return !v.IsZero()
}
