package api

// The HTTP/JSON API an agent serves on its unix socket. The CLI is its only
// required client; every route is versioned under /v1. Errors answer with a
// non-2xx status and an ErrorResponse body. {id} accepts a full ID, a unique
// ID prefix, or a name (service name, node hostname, container name, image
// reference).
//
// Reads come from the agent's replica, which may trail the leader by a few
// entries; GET routes of nodes, services and tasks take ?consistent=1 to
// first catch up with the leader's commit (read your writes across nodes).
// Write routes always do.
//
//	GET    /v1/status                              → Status
//	POST   /v1/init                                → InitResponse
//	POST   /v1/join            JoinRequest         → Status
//	GET    /v1/token                               → InitResponse
//	POST   /v1/token/rotate                        → InitResponse
//	POST   /v1/ca/rotate?wait=DURATION             → CARotateResponse
//	POST   /v1/leave?force=1                       → {} (force: the only member too)
//	GET    /v1/nodes                               → []Node
//	GET    /v1/nodes/{id}                          → Node
//	POST   /v1/nodes/{id}/update NodeUpdate        → Node
//	DELETE /v1/nodes/{id}?force=1                  → {}
//	GET    /v1/images                              → []Image
//	POST   /v1/images/import?ref=NAME:TAG  (body: rootfs tar[.gz]) → Image
//	POST   /v1/images/load                 (body: docker-save or OCI layout tar) → []Image
//	POST   /v1/images/pull     PullRequest         → Image
//	GET    /v1/images/{ref}                        → Image
//	DELETE /v1/images/{ref}                        → {}
//	GET    /v1/containers                          → []Container
//	POST   /v1/containers      RunRequest          → Container (created and started)
//	GET    /v1/containers/{id}                     → Container
//	POST   /v1/containers/{id}/wait                → Container (blocks until it exits)
//	POST   /v1/containers/{id}/stop?timeout=10s    → Container
//	DELETE /v1/containers/{id}?force=1             → {}
//	GET    /v1/containers/{id}/logs?follow=1&tail=N&since=RFC3339 → NDJSON of LogLine
//	POST   /v1/containers/{id}/exec ExecRequest (Upgrade: shoal-exec/1) → 101, then exec frames (exec.go)
//	GET    /v1/volumes                             → []Volume (this node's)
//	POST   /v1/volumes         VolumeCreateRequest → Volume
//	GET    /v1/volumes/{name}                      → Volume
//	DELETE /v1/volumes/{name}                      → {} (409 while a container uses it)
//	GET    /v1/services                            → []Service
//	POST   /v1/services        ServiceSpec         → Service
//	GET    /v1/services/{id}                       → Service
//	POST   /v1/services/{id}/update?version=N ServiceSpec (complete new spec) → Service
//	POST   /v1/services/check  DeployCheck         → {} (writes nothing; 400/404/409 names the first refusal)
//	POST   /v1/services/{id}/scale ScaleRequest    → Service
//	POST   /v1/services/{id}/rollback              → Service
//	DELETE /v1/services/{id}                       → {}
//	GET    /v1/services/{id}/tasks?desired_state=running → []Task
//	GET    /v1/services/{id}/logs?follow=1&tail=N&since=RFC3339 → NDJSON of LogLine
//	GET    /v1/tasks?service=ID&node=ID            → []Task
//	GET    /v1/secrets                             → []Secret
//	POST   /v1/secrets         SecretCreateRequest → Secret
//	GET    /v1/secrets/{id}                        → Secret (never its data)
//	DELETE /v1/secrets/{id}                        → {}
//	GET    /v1/configs                             → []Config (without data)
//	POST   /v1/configs         SecretCreateRequest → Config
//	GET    /v1/configs/{id}                        → Config (with data)
//	DELETE /v1/configs/{id}                        → {}
//	GET    /v1/events?since=RFC3339&until=RFC3339&type=T&name=N → NDJSON of Event
//	       (history from since, then live until until or the client leaves;
//	       type and name may repeat: same key ORs, different keys AND)
const APIVersion = "v1"

// DeployCheck is the body of POST /v1/services/check: the writes of one
// user action (`stack deploy`), in the order the client will send them —
// networks, secrets and configs to create, then services to remove, to
// update and to create. The agent checks each write as its route and the
// leader would, against the state the writes before it leave (a removal
// frees a port a later create publishes), and answers {} or the first
// refusal, naming its service or object; it writes nothing. Its body may
// hold up to 32 MiB (every spec at once), each spec at most the 4 MiB its
// own write takes (400 past it); past 32 MiB the answer is 413. Agents
// older than this route answer 405 (or 404). On 405 and 413 the client
// writes without the check, as it did before.
type DeployCheck struct {
	Networks []Network            `json:"networks,omitempty"`
	Secrets  []ObjectCheck        `json:"secrets,omitempty"`
	Configs  []ObjectCheck        `json:"configs,omitempty"`
	Remove   []string             `json:"remove,omitempty"`
	Update   []ServiceUpdateCheck `json:"update,omitempty"`
	Create   []ServiceSpec        `json:"create,omitempty"`
}

// ObjectCheck is a secret or config a DeployCheck would create: its size
// stands for its data, which the check does not need.
type ObjectCheck struct {
	Name   string            `json:"name"`
	Size   int               `json:"size"`
	Labels map[string]string `json:"labels,omitempty"`
}

// ServiceUpdateCheck is an update a DeployCheck would send: the service
// (ID or name), the version the client read (0: any) and the new spec.
type ServiceUpdateCheck struct {
	ID      string      `json:"id"`
	Version uint64      `json:"version,omitempty"`
	Spec    ServiceSpec `json:"spec"`
}

// ScaleRequest is the body of POST /v1/services/{id}/scale.
type ScaleRequest struct {
	Replicas uint64 `json:"replicas"`
}
