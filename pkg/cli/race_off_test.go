//go:build !race

package cli

// raceBuild: the tests are built without the race detector.
const raceBuild = false
