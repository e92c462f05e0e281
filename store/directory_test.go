package store_test

import (
	"fmt"
	"testing"

	"poosms.org/poosms/store"
	"poosms.org/poosms/store/storetest"
)

func TestDirectorySQLite(t *testing.T) {
	storetest.RunDirectory(t, func(t *testing.T) *store.DB {
		return open(t, "sqlite", t.TempDir())
	})
}

func TestDirectoryMySQL(t *testing.T) {
	server := mysqlServer(t)
	storetest.RunDirectory(t, func(t *testing.T) *store.DB {
		return open(t, newMySQLDatabase(t, server), "")
	})
}

// BenchmarkSearchDirectorySQLite searches 10,000 listings by interest (a
// substring match over every interest) and by country and language.
func BenchmarkSearchDirectorySQLite(b *testing.B) {
	ctx := b.Context()
	db, err := store.Open(ctx, "sqlite", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	countries := []string{"DE", "FR", "BR", "JP", "US"}
	langs := []string{"de", "fr", "pt-BR", "ja", "en"}
	for i := range 10_000 {
		name := fmt.Sprintf("user%05d", i)
		if err := db.CreateAccount(ctx, name, store.Credentials{}); err != nil {
			b.Fatal(err)
		}
		if err := db.PutDirectoryEntry(ctx, store.DirectoryEntry{
			Username: name, Nick: "Nick " + name, Country: countries[i%5],
			Languages: []string{langs[i%5], "en"},
			Interests: []string{fmt.Sprintf("topic %d", i%97), fmt.Sprintf("hobby %d", i%13)},
		}); err != nil {
			b.Fatal(err)
		}
	}
	for _, q := range []store.DirectoryQuery{
		{Interest: "topic 42", Max: 50},
		{Country: "JP", Language: "ja", Max: 50},
		{Nick: "user0999", Max: 50},
	} {
		b.Run(fmt.Sprintf("%+v", q), func(b *testing.B) {
			for b.Loop() {
				got, err := db.SearchDirectory(ctx, q)
				if err != nil || len(got) == 0 {
					b.Fatalf("SearchDirectory = %d, %v", len(got), err)
				}
			}
		})
	}
}
