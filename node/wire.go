package node

// The RPC protocol lives in node/wire; these are its names in the agent's
// code (serving and calling: rpc.go; handlers: join.go, keys.go, …).

import (
	"bufio"

	"github.com/shoal-org/shoal/node/wire"
)

// RPC method names.
const (
	rpcJoin            = wire.MethodJoin
	rpcApply           = wire.MethodApply
	rpcBlob            = wire.MethodBlob
	rpcManifest        = wire.MethodManifest
	rpcLogs            = wire.MethodLogs
	rpcPing            = wire.MethodPing
	rpcReadIndex       = wire.MethodReadIndex
	rpcAdmin           = wire.MethodAdmin
	rpcAdminWrite      = wire.MethodAdminWrite
	rpcKEK             = wire.MethodKEK
	rpcToken           = wire.MethodToken
	rpcRenew           = wire.MethodRenew
	rpcCARotate        = wire.MethodCARotate
	rpcRejoin          = wire.MethodRejoin
	rpcRemoval         = wire.MethodRemoval
	rpcSecrets         = wire.MethodSecrets
	rpcSnapshotRestore = wire.MethodSnapshotRestore
	rpcUsage           = wire.MethodUsage
)

// The envelope and its error codes.
type (
	rpcRequest  = wire.Request
	rpcResponse = wire.Response
	rpcError    = wire.Error
)

const (
	codeNotLeader = wire.CodeNotLeader
	codeRefused   = wire.CodeRefused
	codeForbidden = wire.CodeForbidden
)

func errorCode(err error) string { return wire.ErrorCode(err) }

func decodeRPCRequest(line []byte) (rpcRequest, error) { return wire.DecodeRequest(line) }

func readLine(r *bufio.Reader, limit int) ([]byte, error) { return wire.ReadLine(r, limit) }

// The method bodies.
type (
	joinRPCRequest            = wire.JoinRequest
	joinRPCResponse           = wire.JoinResponse
	adminRPCRequest           = wire.AdminRequest
	applyRPCRequest           = wire.ApplyRequest
	adminWriteRequest         = wire.AdminWriteRequest
	readIndexResponse         = wire.ReadIndexResponse
	blobRPCRequest            = wire.BlobRequest
	blobRPCResponse           = wire.BlobResponse
	manifestRPCRequest        = wire.ManifestRequest
	logsRPCRequest            = wire.LogsRequest
	kekRPCResponse            = wire.KEKResponse
	tokenRPCRequest           = wire.TokenRequest
	tokenRPCResponse          = wire.TokenResponse
	caRotateRPCResponse       = wire.CARotateResponse
	removalRPCRequest         = wire.RemovalRequest
	removalRPCResponse        = wire.RemovalResponse
	renewRPCRequest           = wire.RenewRequest
	renewRPCResponse          = wire.RenewResponse
	secretsRPCRequest         = wire.SecretsRequest
	secretsRPCResponse        = wire.SecretsResponse
	snapshotRestoreRPCRequest = wire.SnapshotRestoreRequest
)
