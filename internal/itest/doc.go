// Package itest holds integration tests that run whole clusters through
// cluster2.Listen (the test binary re-executed as a master, which re-executes
// it as workers) and exercise packages together: the shared cache and its
// persistence as a real cluster uses them.
package itest
