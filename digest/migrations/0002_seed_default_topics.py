from django.db import migrations


def seed_topics(apps, schema_editor):
    # The shipped taxonomy at the time the database is created; topics that
    # already exist (edited by an admin) are left alone.
    from digest.tagging.taxonomy import DEFAULT_TOPICS

    Topic = apps.get_model("digest", "Topic")
    existing = set(Topic.objects.values_list("slug", flat=True))
    Topic.objects.bulk_create(
        Topic(
            slug=topic["slug"],
            name=topic["name"],
            description=topic["description"],
            phrases="\n".join(topic["phrases"]),
            is_active=True,
        )
        for topic in DEFAULT_TOPICS
        if topic["slug"] not in existing
    )


class Migration(migrations.Migration):
    dependencies = [("digest", "0001_initial")]

    operations = [migrations.RunPython(seed_topics, migrations.RunPython.noop)]
