package cli

import "sync"

// What a run may leave behind if the plugin exits before its teardown
// ends (a second Ctrl-C): each command says it once it starts creating
// things, and main prints it.
var leftover struct {
	sync.Mutex
	what string
}

// setLeftover records what this run may leave behind, and how to remove it.
func setLeftover(what string) {
	leftover.Lock()
	defer leftover.Unlock()
	leftover.what = what
}

// Leftover says what the running command may leave behind if the process
// exits now, and how to remove it.
func Leftover() string {
	leftover.Lock()
	defer leftover.Unlock()
	if leftover.what == "" {
		return "nothing was created yet"
	}
	return leftover.what
}
