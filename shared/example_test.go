package shared_test

import (
	"errors"
	"fmt"

	"github.com/fastgen/fastgen/shared"
)

// A server's read loop: decode strictly, answer problems with the matching
// error code, dispatch the rest.
func ExampleDecodeClient() {
	req, _ := shared.Encode(&shared.Generate{ID: "a", Prompt: "Hi", KV: &shared.KV{Mode: shared.ModeFastGen}})
	bad, _ := shared.Encode(&shared.Generate{ID: "b", Prompt: "Hi", TopP: shared.Ptr(2.0)})
	wrong, _ := shared.Encode(&shared.Pong{})

	for _, msg := range [][]byte{req, bad, wrong, []byte("not msgpack")} {
		f, err := shared.DecodeClient(msg)
		if err != nil {
			var ve *shared.ValidationError
			if errors.As(err, &ve) {
				fmt.Println(shared.ErrorCode(err), ve.Field)
			} else {
				fmt.Println(shared.ErrorCode(err))
			}
			continue
		}
		switch f := f.(type) {
		case *shared.Generate:
			fmt.Println("generate", f.ID, f.Mode(), f.Threshold(), f.Streams())
		case *shared.Cancel:
			fmt.Println("cancel", f.ID)
		case *shared.Ping:
			fmt.Println("ping")
		}
	}
	// Output:
	// generate a fastgen 0.98 [fastgen]
	// bad_request top_p
	// bad_request
	// bad_request
}
