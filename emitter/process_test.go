package emitter_test

var children = map[string]func(){}
