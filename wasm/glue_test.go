//go:build js && wasm

package main

import (
	"reflect"
	"testing"

	"github.com/fastgen/fastgen/shared"
)

// Runs under Node (no DOM): the byte bridge between the socket's
// ArrayBuffers and the shared codec must carry frames unchanged.
func TestFramesThroughJSBuffers(t *testing.T) {
	frames := []shared.Frame{
		&shared.Token{ID: "a", Stream: "fastgen", Index: 2, Token: 7, Text: "é\x00", Logprob: -1},
		&shared.Occupancy{ID: "a", Stream: "full", Kept: []uint32{1, 2, 3}, KVBytes: 10, KVBytesFull: 20},
		&shared.Pong{},
	}
	for _, f := range frames {
		b, err := shared.Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		arr := bytesToJS(b)
		if arr.Get("length").Int() != len(b) {
			t.Fatal("length")
		}
		got, err := shared.Decode(bytesFromJS(arr.Get("buffer")))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := shared.Decode(b)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%#v != %#v", got, want)
		}
	}
	if len(bytesFromJS(bytesToJS(nil).Get("buffer"))) != 0 {
		t.Fatal("empty buffer")
	}
}
