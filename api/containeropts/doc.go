// Package containeropts holds the rules of a service's container options
// beyond its command (capabilities, sysctls, rlimits, stop signal, hostname,
// extra hosts): which names exist, how a value is spelt, what a runc config
// can take. The CLI parses with them, the leader's spec validation refuses
// with them (so a bad value fails `service create`, not every task), and
// the runtime's spec builder applies them: the three must agree, so the
// rules live once, here, in the standard library only, like api.
package containeropts
