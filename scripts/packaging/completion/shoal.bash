# bash completion for shoal: the binary lists the candidates itself
# (`shoal WORDS... --generate-bash-completion`, see cmd/shoal/completion.go).
_shoal() {
	local cur words cword
	if declare -F _init_completion >/dev/null 2>&1; then
		_init_completion -n "=:" || return
	else
		COMPREPLY=()
		cur="${COMP_WORDS[COMP_CWORD]}"
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	fi
	local opts
	opts=$("${words[0]}" "${words[@]:1:$((cword - 1))}" "$cur" --generate-bash-completion 2>/dev/null)
	COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}
complete -o bashdefault -o default -F _shoal shoal
