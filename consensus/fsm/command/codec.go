package command

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/shoal-org/shoal/consensus"
)

// decoders maps each type byte to a decoder of its JSON body.
var decoders = map[Type]func([]byte) (Command, error){
	TypeBootstrapCluster:  decodeAs[BootstrapCluster],
	TypeUpsertNode:        decodeAs[UpsertNode],
	TypeUpdateOwnNode:     decodeAs[UpdateOwnNode],
	TypeUpdateNode:        decodeAs[UpdateNode],
	TypeSetNodeStatus:     decodeAs[SetNodeStatus],
	TypeSetNodeVoter:      decodeAs[SetNodeVoter],
	TypeRemoveNode:        decodeAs[RemoveNode],
	TypeRotateToken:       decodeAs[RotateToken],
	TypeSetGossipKeys:     decodeAs[SetGossipKeys],
	TypeRevokeCert:        decodeAs[RevokeCert],
	TypeSetVoterTarget:    decodeAs[SetVoterTarget],
	TypeCreateService:     decodeAs[CreateService],
	TypeUpdateService:     decodeAs[UpdateService],
	TypeDeleteService:     decodeAs[DeleteService],
	TypeUpsertTasks:       decodeAs[UpsertTasks],
	TypeTaskStatus:        decodeAs[TaskStatus],
	TypeDeleteTasks:       decodeAs[DeleteTasks],
	TypeTrimTasks:         decodeAs[TrimTasks],
	TypeUpsertImage:       decodeAs[UpsertImage],
	TypeSetImageNode:      decodeAs[SetImageNode],
	TypeDeleteImage:       decodeAs[DeleteImage],
	TypeBatch:             decodeAs[Batch],
	TypeSetClusterEpoch:   decodeAs[SetClusterEpoch],
	TypeSealClusterKeys:   decodeAs[SealClusterKeys],
	TypeRotateCA:          decodeAs[RotateCA],
	TypeFinishCARotation:  decodeAs[FinishCARotation],
	TypeSetNodeCert:       decodeAs[SetNodeCert],
	TypeRecordCertExpiry:  decodeAs[RecordCertExpiry],
	TypeTrimRevoked:       decodeAs[TrimRevoked],
	TypeStageNodeCert:     decodeAs[StageNodeCert],
	TypeConfirmNodeCert:   decodeAs[ConfirmNodeCert],
	TypeCreateNetwork:     decodeAs[CreateNetwork],
	TypeDeleteNetwork:     decodeAs[DeleteNetwork],
	TypeClaimNetworkShare: decodeAs[ClaimNetworkShare],
	TypeSetRunAttachments: decodeAs[SetRunAttachments],
	// Secrets and configs.
	TypeCreateSecret: decodeAs[CreateSecret],
	TypeDeleteSecret: decodeAs[DeleteSecret],
	TypeCreateConfig: decodeAs[CreateConfig],
	TypeDeleteConfig: decodeAs[DeleteConfig],
}

func decodeAs[T Command](body []byte) (Command, error) {
	var c T
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, err
	}
	return c, nil
}

// Encode encodes a command as a log entry: type byte, version byte,
// JSON body.
func Encode(cmd Command) ([]byte, error) {
	if isNil(cmd) {
		return nil, fmt.Errorf("encode command: nil: %w", consensus.ErrInvalid)
	}
	if _, ok := decoders[cmd.Type()]; !ok {
		return nil, fmt.Errorf("encode command type %d: unknown type: %w", cmd.Type(), consensus.ErrInvalid)
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command type %d: %w", cmd.Type(), err)
	}
	out := make([]byte, 0, len(body)+2)
	out = append(out, byte(cmd.Type()), Version)
	return append(out, body...), nil
}

// Decode decodes a log entry made by Encode. It returns an error wrapping
// consensus.ErrMalformed for anything else and never panics: it also reads
// entries that arrive over the network before they are proposed.
func Decode(data []byte) (Command, error) {
	if len(data) < 2 {
		return nil, fmt.Errorf("decode command: %d bytes: %w", len(data), consensus.ErrMalformed)
	}
	t, v := Type(data[0]), data[1]
	dec, ok := decoders[t]
	if !ok {
		return nil, fmt.Errorf("decode command: unknown type %d: %w", t, consensus.ErrMalformed)
	}
	if v != Version {
		return nil, fmt.Errorf("decode command type %d: unknown version %d: %w", t, v, consensus.ErrMalformed)
	}
	cmd, err := dec(data[2:])
	if err != nil {
		return nil, fmt.Errorf("decode command type %d: %w: %w", t, consensus.ErrMalformed, err)
	}
	return cmd, nil
}

// isNil reports a nil interface or a typed nil pointer (callers may pass
// &UpsertNode{...} as well as UpsertNode{...}).
func isNil(c Command) bool {
	if c == nil {
		return true
	}
	v := reflect.ValueOf(c)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// batchEntry is one command inside a Batch body.
type batchEntry struct {
	Type    Type            `json:"type"`
	Version uint8           `json:"version"`
	Body    json.RawMessage `json:"body"`
}

// MarshalJSON encodes the batch as {"commands":[{type,version,body}...]}.
func (b Batch) MarshalJSON() ([]byte, error) {
	entries := make([]batchEntry, 0, len(b.Commands))
	for i, c := range b.Commands {
		if isNil(c) {
			return nil, fmt.Errorf("batch command %d: nil: %w", i, consensus.ErrInvalid)
		}
		if c.Type() == TypeBatch {
			return nil, fmt.Errorf("batch command %d: nested batch: %w", i, consensus.ErrInvalid)
		}
		body, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("batch command %d: %w", i, err)
		}
		entries = append(entries, batchEntry{Type: c.Type(), Version: Version, Body: body})
	}
	return json.Marshal(struct {
		Commands []batchEntry `json:"commands"`
	}{entries})
}

// UnmarshalJSON decodes what MarshalJSON wrote; nested batches are refused.
func (b *Batch) UnmarshalJSON(data []byte) error {
	var raw struct {
		Commands []batchEntry `json:"commands"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	b.Commands = make([]Command, 0, len(raw.Commands))
	for i, e := range raw.Commands {
		if e.Type == TypeBatch {
			return fmt.Errorf("batch command %d: nested batch", i)
		}
		dec, ok := decoders[e.Type]
		if !ok {
			return fmt.Errorf("batch command %d: unknown type %d", i, e.Type)
		}
		if e.Version != Version {
			return fmt.Errorf("batch command %d: unknown version %d", i, e.Version)
		}
		body := []byte(e.Body)
		if len(body) == 0 {
			body = []byte("null")
		}
		c, err := dec(body)
		if err != nil {
			return fmt.Errorf("batch command %d: %w", i, err)
		}
		b.Commands = append(b.Commands, c)
	}
	return nil
}
