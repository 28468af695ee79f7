//go:build race

package cli

// raceBuild: the tests (and, under make race, the plugin they run) are
// built with the race detector, which multiplies a program's memory by
// five to ten (go.dev/doc/articles/race_detector#Runtime_Overheads).
const raceBuild = true
