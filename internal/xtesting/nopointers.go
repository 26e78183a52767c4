package xtesting

import (
	"reflect"
	"testing"
)

// AssertNoPointers fails the test for every value whose type holds a Go
// pointer anywhere (pointers, slices, maps, strings, interfaces, funcs,
// channels, unsafe.Pointer, uintptr is allowed). Arena memory is invisible to
// the garbage collector: a Go pointer stored there would dangle.
func AssertNoPointers(tb testing.TB, values ...any) {
	tb.Helper()
	for _, v := range values {
		t := reflect.TypeOf(v)
		if path, ok := findPointer(t, t.String()); ok {
			tb.Errorf("xtesting: %s holds a Go pointer at %s", t, path)
		}
	}
}

func findPointer(t reflect.Type, path string) (string, bool) {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return "", false
	case reflect.Array:
		return findPointer(t.Elem(), path+"[i]")
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if p, ok := findPointer(f.Type, path+"."+f.Name); ok {
				return p, true
			}
		}
		return "", false
	default:
		return path + " (" + t.Kind().String() + ")", true
	}
}
