package consensus

import (
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestCloneSpecSharesNothing: every slice, map and pointer of a service
// spec is copied, so the clone a read hands out cannot change what memdb
// holds (a field added to ServiceSpec and forgotten in cloneSpec fails
// here).
func TestCloneSpecSharesNothing(t *testing.T) {
	var s api.ServiceSpec
	v := reflect.ValueOf(&s).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		case reflect.Map:
			m := reflect.MakeMap(f.Type())
			m.SetMapIndex(reflect.Zero(f.Type().Key()), reflect.Zero(f.Type().Elem()))
			f.Set(m)
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		}
	}
	c := cloneSpec(s)
	cv := reflect.ValueOf(c)
	for i := 0; i < v.NumField(); i++ {
		f, g := v.Field(i), cv.Field(i)
		switch f.Kind() {
		case reflect.Slice, reflect.Map, reflect.Pointer:
			if f.Pointer() == g.Pointer() {
				t.Errorf("ServiceSpec.%s is shared by the clone", v.Type().Field(i).Name)
			}
		}
	}
}
