package scheduler_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestRandomOperationsConverge replays random operator actions and failures
// against the simcluster.Cluster. After each one the cluster must converge (every
// step is checked for idempotency by Cluster.Step) to every slot having
// exactly one running task and every update finished.
func TestRandomOperationsConverge(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for seed := int64(1); seed <= int64(seeds); seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			c := cluster(t, "n0", "n1", "n2", "n3", "n4")
			var ids []string
			for i := 0; i < 3; i++ {
				sp := testSpec(fmt.Sprintf("s%d", i), uint64(1+rng.Intn(6)))
				if rng.Intn(2) == 0 {
					sp.UpdateConfig.Order = api.OrderStartFirst
				}
				sp.UpdateConfig.Parallelism = rng.Intn(3)
				ids = append(ids, c.CreateService(sp).ID)
			}
			g := testSpec("g", 0)
			g.Mode = api.ModeGlobal
			global := c.CreateService(g).ID
			converge(t, c)
			others := []string{"n1", "n2", "n3", "n4"} // n0 always stays usable
			for op := 0; op < 25; op++ {
				id := ids[rng.Intn(len(ids))]
				node := c.Nodes[others[rng.Intn(len(others))]]
				var what string
				switch rng.Intn(8) {
				case 0:
					node.Status, what = api.NodeDown, "down "+node.ID
				case 1:
					node.Status, node.Availability, what = api.NodeReady, api.AvailabilityActive, "up "+node.ID
				case 2:
					node.Availability, what = api.AvailabilityDrain, "drain "+node.ID
				case 3:
					node.Availability, what = api.AvailabilityPause, "pause "+node.ID
				case 4:
					r := uint64(rng.Intn(8))
					c.UpdateService(id, func(sp *api.ServiceSpec) { sp.Replicas = r })
					what = fmt.Sprintf("scale %s=%d", id, r)
				case 5:
					img := fmt.Sprintf("img:%d", rng.Intn(4))
					c.UpdateService(id, func(sp *api.ServiceSpec) { sp.Image = img })
					what = "update " + id + " " + img
				case 6:
					act := c.Active(id)
					if len(act) > 0 {
						tk := act[rng.Intn(len(act))]
						if tk.State == api.TaskRunning {
							c.Finish(tk.ID, rng.Intn(2))
						}
						what = "finish " + tk.Name
					}
				case 7:
					// A partial step: plan and apply without reports.
					step(t, c)
					what = "step"
				}
				if _, err := c.Converge(500); err != nil {
					t.Fatalf("op %d (%s): %v", op, what, err)
				}
				for _, sid := range ids {
					if err := c.CheckSlots(sid); err != nil {
						t.Fatalf("op %d (%s): service %s: %v", op, what, sid, err)
					}
					for _, tk := range c.Active(sid) {
						if tk.Image != c.Services[sid].Spec.Image {
							t.Fatalf("op %d (%s): task %s runs %s, service wants %s", op, what, tk.Name, tk.Image, c.Services[sid].Spec.Image)
						}
					}
					if st := c.Services[sid].UpdateStatus; st != nil && st.State != api.UpdateCompleted {
						t.Fatalf("op %d (%s): service %s update %+v", op, what, sid, st)
					}
				}
				want := 0
				for _, n := range c.Nodes {
					if n.Status == api.NodeReady && n.Availability != api.AvailabilityDrain {
						want++
					}
				}
				got := c.RunningPerNode(global)
				total := 0
				for n, k := range got {
					if k != 1 {
						t.Fatalf("op %d (%s): global has %d tasks on %s", op, what, k, n)
					}
					total++
				}
				// Paused nodes keep a task they had; they get none new.
				if total > want {
					t.Fatalf("op %d (%s): global runs on %d nodes, %d usable", op, what, total, want)
				}
			}
		})
	}
}
